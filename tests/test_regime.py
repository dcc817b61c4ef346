"""The regime figures and the "Paper vs this benchmark" part: the task-identity probe on synthetic features (separable
vs overlapping, deterministic), the figures' verdicts and the papers' orderings on hand-made results tables (holding,
failing, approximately equal, not measured), and the regime stages' declarations in dvc.yaml."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from mergeflow.errors import MergeflowError
from mergeflow.evaluation.regime import (
    ProbeResult,
    figures_from_record,
    format_regime_table,
    regime_figures,
    regime_record,
    task_identity_probe,
)
from mergeflow.reporting.paper import APPROX_POINTS, build_paper_report, check_orderings, ordering_summary, paper_table
from mergeflow.reporting.regime_report import build_regime_report
from tasks import _paths

TASKS = ["a", "b", "c"]
SUITE = "toy"


def _features(centres: torch.Tensor, count: int, spread: float, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [centre + spread * torch.randn(count, centres.shape[1], generator=generator) for centre in centres]


def test_probe_separates_separable_tasks_and_not_overlapping_ones() -> None:
    centres = 4.0 * torch.eye(3, 16)
    probe = task_identity_probe(_features(centres, 200, 1.0, 0), _features(centres, 100, 1.0, 1))
    assert probe.accuracy > 0.99 and min(probe.per_task) > 0.97 and probe.train_accuracy > 0.99
    assert probe.confusion.sum() == 300 and probe.confusion.diag().sum() == round(300 * probe.accuracy)
    same = torch.zeros(3, 16)  # three tasks drawn from one distribution: the features cannot say which is which
    overlapping = task_identity_probe(_features(same, 200, 1.0, 0), _features(same, 100, 1.0, 1))
    assert overlapping.accuracy < 0.5


def test_probe_is_deterministic() -> None:
    centres = 1.0 * torch.eye(3, 8)
    train, test = _features(centres, 100, 1.0, 2), _features(centres, 50, 1.0, 3)
    first, second = task_identity_probe(train, test), task_identity_probe(train, test)
    assert first.accuracy == second.accuracy and first.per_task == second.per_task
    assert torch.equal(first.confusion, second.confusion)


def _rows(method: str, router: str, values: list[float], metric: str = "accuracy", suite: str = SUITE) -> list[tuple]:
    return [(suite, method, router, task, metric, value) for task, value in zip(TASKS, values, strict=True)]


def _table(*groups: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame([row for group in groups for row in group], columns=["suite", "method", "router", "task", "metric", "value"])


def _probe(accuracy: float) -> ProbeResult:
    return ProbeResult(accuracy, [accuracy] * 3, 1.0, torch.eye(3, dtype=torch.long) * 10)


def test_regime_verdicts_pass_fail_and_missing() -> None:
    table = _table(_rows("pretrained", "oracle", [0.5, 0.4, 0.45]), _rows("finetuned", "oracle", [0.95, 0.9, 0.9]),
                   _rows("task_arithmetic", "oracle", [0.7, 0.7, 0.7]),
                   _rows("pretrained", "oracle", [0.0, 0.0, 0.0], suite="other"))
    figures = {f.key: f for f in regime_figures(table, SUITE, TASKS, _probe(0.98))}
    assert {k: f.verdict for k, f in figures.items()} == {k: "PASS" for k in ("zero_shot", "finetuned", "task_arithmetic", "task_identity")}
    assert figures["zero_shot"].value == pytest.approx(0.45)
    assert figures["task_arithmetic"].low == pytest.approx(0.55) and figures["task_arithmetic"].high == pytest.approx(0.81667, abs=1e-4)
    # Task Arithmetic only 5 points above zero-shot, a weak probe, and fine-tuned below target: FAIL
    close = _table(_rows("pretrained", "oracle", [0.5, 0.5, 0.5]), _rows("finetuned", "oracle", [0.8, 0.8, 0.8]),
                   _rows("task_arithmetic", "oracle", [0.55, 0.55, 0.55]))
    failed = {f.key: f.verdict for f in regime_figures(close, SUITE, TASKS, _probe(0.9))}
    assert failed == {"zero_shot": "PASS", "finetuned": "FAIL", "task_arithmetic": "FAIL", "task_identity": "FAIL"}
    # above fine-tuned - 10 points fails too
    high = _table(_rows("pretrained", "oracle", [0.5] * 3), _rows("finetuned", "oracle", [0.9] * 3),
                  _rows("task_arithmetic", "oracle", [0.85] * 3))
    assert {f.key: f.verdict for f in regime_figures(high, SUITE, TASKS, None)}["task_arithmetic"] == "FAIL"
    # no Task Arithmetic rows (a profile without it), a task missing from the fine-tuned rows, no probe: MISSING
    partial = _table(_rows("pretrained", "oracle", [0.5] * 3), _rows("finetuned", "oracle", [0.9] * 3)[:2])
    missing = {f.key: f.verdict for f in regime_figures(partial, SUITE, TASKS, None)}
    assert missing == {"zero_shot": "PASS", "finetuned": "MISSING", "task_arithmetic": "MISSING", "task_identity": "MISSING"}


def test_a_real_suite_reports_its_figures_without_verdicts() -> None:
    """The same failing figures on real data: values and the papers' column kept, no bounds, no FAIL."""
    close = _table(_rows("pretrained", "oracle", [0.5, 0.5, 0.5]), _rows("finetuned", "oracle", [0.8, 0.8, 0.8]),
                   _rows("task_arithmetic", "oracle", [0.55, 0.55, 0.55]))
    synthetic = regime_figures(close, SUITE, TASKS, _probe(0.9))
    real = regime_figures(close, SUITE, TASKS, _probe(0.9), targets=False)
    assert [f.value for f in real] == [f.value for f in synthetic] and [f.paper for f in real] == [f.paper for f in synthetic]
    assert {f.verdict for f in real} == {"REPORTED"} and "FAIL" in {f.verdict for f in synthetic}
    assert "FAIL" not in format_regime_table(real) and regime_record(real, _probe(0.9), TASKS)["all_pass"]


def test_regime_table_record_and_report_agree() -> None:
    table = _table(_rows("pretrained", "oracle", [0.3] * 3), _rows("finetuned", "oracle", [0.9] * 3),
                   _rows("task_arithmetic", "oracle", [0.6] * 3))
    probe = ProbeResult(0.99, [1.0, 0.98, 0.99], 1.0, torch.tensor([[10, 0, 0], [1, 48, 1], [0, 1, 99]]))
    figures = regime_figures(table, SUITE, TASKS, probe)
    printed = format_regime_table(figures)
    assert "FAIL" in printed and "PASS" in printed and "30.0" in printed and ">= 40 %" in printed
    record = regime_record(figures, probe, TASKS)
    assert not record["all_pass"] and record["probe"]["per_task"]["b"] == 0.98
    assert [f.verdict for f in figures_from_record(record)] == [f.verdict for f in figures]
    report = build_regime_report(record, TASKS).markdown
    assert report.startswith("# Regime") and "not every figure meets its target" in report
    assert re.search(r"\|\s*b\s*\|\s*98\.0\s*\|", report)
    assert "a 2.0, c 2.0" in report  # where task b's misassigned test inputs went


def _results(**overrides: float) -> pd.DataFrame:
    """A results table in which every ordering of the papers holds (averages in percent); overrides change one row."""
    accuracy = {("finetuned", "oracle"): 90.0, ("tall_ta", "mad"): 89.5, ("tall_ta", "oracle"): 89.8,
                ("tsv_m", "oracle"): 84.0, ("cart", "oracle"): 85.0, ("iso_cts", "oracle"): 85.5,
                ("ties", "oracle"): 72.0, ("task_arithmetic", "oracle"): 70.0, ("weight_averaging", "oracle"): 65.0,
                ("adarank_ta", "none"): 88.0, ("adamerging", "none"): 80.0, ("adarank_cart", "none"): 89.0,
                ("pretrained", "oracle"): 48.0, ("wemoe", "wemoe"): 89.0, ("mow_merging", "mow"): 87.0}
    routing = {"mad": 98.0, "euclidean": 96.0, "cosine": 96.5, "diagonal": 85.0, "knn1": 93.0, "knn3": 92.0}
    for key, value in overrides.items():
        method, router = key.rsplit("__", 1)
        (routing if method == "route" else accuracy)[router if method == "route" else (method, router)] = value
    groups = [_rows(m, r, [v / 100] * 3) for (m, r), v in accuracy.items()]
    for method in ("emr", "tall_ta"):  # routing accuracy is the same for every bank served after the router
        groups += [_rows(method, r, [v / 100] * 3, "routing_accuracy") for r, v in routing.items()]
    return _table(*groups)


def _verdicts(table: pd.DataFrame) -> dict[str, str]:
    links = check_orderings(table, SUITE, TASKS)
    return dict(zip(links["link"], links["holds here"], strict=True))


def test_orderings_hold_on_a_table_built_to_satisfy_them() -> None:
    verdicts = _verdicts(_results())
    assert set(verdicts.values()) == {"yes"}, verdicts
    assert len(verdicts) == 5 + 2 + 1 + 2 + 1 + 2
    summary = ordering_summary(check_orderings(_results(), SUITE, TASKS))
    assert set(summary["holds here"]) == {"yes"} and len(summary) == 6


def test_an_ordering_that_fails_is_reported_as_failing() -> None:
    # TIES beats CART: "TSV-M/CART/Iso > TIES/TA" fails (the worst of the tier must beat the best of the next)
    verdicts = _verdicts(_results(ties__oracle=84.5))
    assert verdicts["TSV-M/CART/Iso-CTS > TIES/Task Arithmetic"] == "no"
    assert verdicts["TIES/Task Arithmetic > weight averaging"] == "yes"
    # AdaMerging below TA; cosine routing below diagonal; k-NN(3) above MAD
    verdicts = _verdicts(_results(adamerging__none=60.0, route__cosine=80.0, route__knn3=99.0))
    assert verdicts["TA + AdaMerging > Task Arithmetic"] == "no" and verdicts["TA + AdaRank > TA + AdaMerging"] == "yes"
    assert verdicts["Euclidean/cosine > diagonal covariance"] == "no"
    assert verdicts["MAD > k-NN (k=1)/k-NN (k=3)/k-NN (k=5)/k-NN (k=10)"] == "no"
    summary = dict(ordering_summary(check_orderings(_results(adamerging__none=60.0), SUITE, TASKS)).values)
    assert summary["adaptation: TA + AdaRank > TA + AdaMerging > TA"] == "no"
    assert summary["adaptation: CART + AdaRank > CART"] == "yes"


def test_approximately_equal_means_within_one_point_and_fine_tuned_may_not_be_lower() -> None:
    link = "TALL + MAD ≈ TALL task-known"
    assert APPROX_POINTS == 1.0
    assert _verdicts(_results(tall_ta__mad=88.9))[link] == "yes"   # 0.9 points apart
    assert _verdicts(_results(tall_ta__mad=88.7))[link] == "no"    # 1.1 points apart
    assert _verdicts(_results(tall_ta__mad=90.0))["fine-tuned ≥ TALL + MAD"] == "yes"  # equal is enough
    assert _verdicts(_results(tall_ta__mad=90.2))["fine-tuned ≥ TALL + MAD"] == "no"


def test_missing_methods_are_not_measured_and_the_paper_table_quotes_its_sources() -> None:
    table = _results()
    table = table[~table["method"].isin(["adarank_cart"])]
    verdicts = _verdicts(table)
    assert verdicts["CART + AdaRank > CART"] == "not measured"
    frame = paper_table(table, SUITE, TASKS).set_index("method")
    assert frame.loc["Task Arithmetic", "paper (CLIP ViT-B/32, 8 tasks)"] == "69.2"
    assert frame.loc["Task Arithmetic", "ours"] == "70.0"
    assert frame.loc["CART + AdaRank", "ours"] == "-"
    assert frame.loc["routing: MAD", "ours"] == "98.0" and frame.loc["routing: k-NN (k=1)", "paper (CLIP ViT-B/32, 8 tasks)"] == "93.7"
    assert "AdaRank" in frame.loc["fine-tuned", "source"] and "MAD" in frame.loc["TALL + MAD", "source"]
    report = build_paper_report(SUITE, TASKS, table).markdown
    assert report.startswith("# Paper vs this benchmark") and "quoted constants" in report
    assert "shared/seeds/000_" in report and "shared/seeds/003_" in report and "within 1 percentage point" in report


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_regime_stages_declare_their_paths_and_the_code_they_import(root: Path) -> None:
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert stages["base_features"]["outs"] == [str(_paths.BASE_FEATURES)]
    assert str(_paths.BASE_FEATURES) in stages["regime"]["deps"]
    assert "reports/results.parquet" in stages["regime"]["deps"]
    assert [next(iter(m)) for m in stages["regime"]["metrics"]] == [str(_paths.REGIME)]
    assert str(_paths.REGIME) in stages["report"]["deps"]
    # every library module and stage helper a regime stage imports is a dependency (params/errors/atomic/_stage are
    # the plumbing no stage lists); nothing that reads routing or merging settings reaches them
    plumbing = {"mergeflow.params", "mergeflow.errors", "mergeflow.atomic", "tasks._stage"}
    for name in ("base_features", "regime"):
        deps = stages[name]["deps"]
        assert f"tasks/{name}.py" in deps
        for module in _imports(root / "tasks" / f"{name}.py") - plumbing:
            if not module.startswith(("mergeflow", "tasks")):
                continue
            path = ("src/" if module.startswith("mergeflow") else "") + module.replace(".", "/")
            assert any(path == d or path + ".py" == d or path.startswith(d + "/") for d in deps), (name, module)
        assert not any(p.startswith(("route", "merge", "adapt", "lora")) for p in stages[name]["params"])


class _FakeClassifier:
    """Stands in for classifier_for's model: 'features' are the inputs themselves."""

    def eval(self) -> _FakeClassifier:
        return self

    def to(self, device: torch.device) -> _FakeClassifier:
        return self

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.float()


def test_base_features_then_regime_stage_on_fake_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import types

    from tasks import base_features, regime

    centres = 8.0 * torch.eye(3, 6)
    splits = {(task, split): features
              for split, count, seed in (("train", 60, 0), ("test", 30, 1))
              for task, features in zip(TASKS, _features(centres, count, 1.0, seed), strict=True)}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(base_features, "classifier_for", lambda params, task: _FakeClassifier())
    monkeypatch.setattr(base_features, "load_split_tensors", lambda task, split: (None, splits[task, split], torch.zeros(0)))
    # the fake suite is not registered: its kind is given as Params.suite.kind would give it
    params = types.SimpleNamespace(suite=types.SimpleNamespace(name=SUITE, tasks=TASKS, kind="vision", source="synthetic"),
                                   evaluate=types.SimpleNamespace(batch_size=16),
                                   runtime=types.SimpleNamespace(device="cpu", autocast="none"))
    base_features.build(argparse_namespace(), params)  # type: ignore[arg-type]
    assert _paths.BASE_FEATURES.exists()
    (tmp_path / "reports").mkdir()
    table = _table(_rows("pretrained", "oracle", [0.5] * 3), _rows("finetuned", "oracle", [0.9] * 3))
    table.to_parquet(tmp_path / "reports" / "results.parquet", index=False)
    regime.build(argparse_namespace(), params)  # type: ignore[arg-type]
    record = json.loads(_paths.REGIME.read_text())
    verdicts = {f["key"]: f["verdict"] for f in record["figures"]}
    assert verdicts == {"zero_shot": "PASS", "finetuned": "PASS", "task_arithmetic": "MISSING", "task_identity": "PASS"}
    assert set(record["probe"]["per_task"]) == set(TASKS)
    # features of another task list are refused, not silently probed
    other = types.SimpleNamespace(suite=types.SimpleNamespace(name=SUITE, tasks=["a", "b"], kind="vision"))
    with pytest.raises(MergeflowError, match="rerun base_features"):
        regime.build(argparse_namespace(), other)  # type: ignore[arg-type]


def argparse_namespace() -> argparse.Namespace:
    return argparse.Namespace()


def test_text_suites_are_held_to_the_language_papers_targets() -> None:
    """Fine-tuned >= 85 % and TA <= fine-tuned - 10 points; zero-shot and the probe are reported, not judged."""
    table = _table(_rows("pretrained", "oracle", [0.2] * 3), _rows("finetuned", "oracle", [0.9] * 3),
                   _rows("task_arithmetic", "oracle", [0.7] * 3))
    figures = regime_figures(table, SUITE, TASKS, _probe(0.6), kind="text")
    assert {f.key: f.verdict for f in figures} == {"zero_shot": "REPORTED", "finetuned": "PASS",
                                                   "task_arithmetic": "PASS", "task_identity": "REPORTED"}
    record = regime_record(figures, _probe(0.6), TASKS, "text")
    assert record["all_pass"] and record["kind"] == "text"
    assert "RoBERTa" in format_regime_table(figures, "text")
    easy = _table(_rows("finetuned", "oracle", [0.9] * 3), _rows("task_arithmetic", "oracle", [0.85] * 3))
    assert {f.key: f.verdict for f in regime_figures(easy, SUITE, TASKS, None, kind="text")}["task_arithmetic"] == "FAIL"


def test_text_paper_table_reads_the_lora_rows_and_checks_the_language_orderings() -> None:
    lora = [("toy-lora", method, router, task, "accuracy", value)
            for method, router, value in (("task_arithmetic", "none", 0.6), ("twin_merging", "twin", 0.8), ("tr_merging", "tr", 0.7))
            for task in TASKS]
    table = pd.concat([_table(_rows("finetuned", "oracle", [0.9] * 3), _rows("task_arithmetic", "oracle", [0.7] * 3)),
                       pd.DataFrame(lora, columns=["suite", "method", "router", "task", "metric", "value"])])
    frame = paper_table(table, SUITE, TASKS, "text").set_index("method")
    assert frame.loc["LoRA: TR-Merging", "ours"] == "70.0" and frame.loc["Task Arithmetic", "ours"] == "70.0"
    assert frame.loc["LoRA: TR-Merging", "paper (language models, GLUE / NLP tasks)"] == "83.0"
    summary = dict(ordering_summary(check_orderings(table, SUITE, TASKS, "text")).values)
    assert summary["LoRA experts: TR-Merging > Twin-Merging > Task Arithmetic"] == "no"  # TR 70 < Twin 80
    assert "RoBERTa-base" in build_paper_report(SUITE, TASKS, table, "text").markdown
