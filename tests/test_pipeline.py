"""The real DVC pipeline on the smoke profile: a cold run builds every stage and the results table, its merge equals
the API's and the CLI's, a rerun is a no-op, and a flipped byte in an output is noticed and rebuilt. What a change
reruns: tests/test_pipeline_incremental.py; a teammate's clone of a pushed run: tests/test_pipeline_remote.py; a
second cold run, killed and resumed, must give the same bytes: tests/flows/test_chaos.py.

The cold run is the session's shared one (pipeline_kit.shared_cold_run: built once, also the chaos test's
reference); the tests here work on a copy of it."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pipeline_kit import copy_of, dvc, ran, shared_cold_run, stale_stages

from mergeflow.evaluation.timings import TIMING_METRICS, read_timings

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return shared_cold_run(tmp_path_factory)


@pytest.fixture(scope="module")
def project(cold_run: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This file's working copy of the cold run (the flipped-byte test changes an output, then rebuilds it)."""
    return copy_of(cold_run[0], tmp_path_factory.mktemp("pipeline") / "project")


def test_cold_run_builds_every_stage_and_the_results_table(cold_run: tuple[Path, str], project: Path) -> None:
    output = cold_run[1]
    params = yaml.safe_load((project / "params.yaml").read_text())
    tasks, methods, route = params["suite"]["tasks"], params["merge"]["methods"], params["route"]
    expected = {"pretrain", "heads", "evaluate_pretrained", "evaluate_finetuned", "results", "analyze_routing", "report"}
    expected |= {"base_features", "regime", "calibrate", "evaluate_static"}
    for task in tasks:
        expected |= {f"prepare@{task}", f"finetune@{task}"}
    expected |= {f"merge@{method}" for method in methods}
    expected |= {f"features@{m}" for m in route["feature_models"]} | {f"evaluate_routed@{m}" for m in route["methods"]}
    expected |= {f"adapt@{m}" for m in params["adapt"]["methods"]} | {"analyze_adaptation"}
    expected |= {f"finetune_lora@{t}" for t in tasks}
    expected |= {f"serve_lora@{m}" for m in params["lora"]["methods"]}
    expected |= {f"serve_dynamic@{m}" for m in params["dynamic"]["methods"]}
    assert params["dynamic"]["methods"] == ["wemoe", "mow_merging"]  # the smoke run covers both
    assert ran(output) == expected
    full_table = pd.read_parquet(project / "reports" / "results.parquet")
    assert list(full_table.columns) == ["suite", "method", "router", "task", "metric", "value"]
    assert set(full_table["suite"]) == {"vision8", "vision8-lora"}
    lora = full_table[full_table["suite"] == "vision8-lora"]
    lora_rows = set(zip(lora["method"], lora["router"], lora["metric"], strict=True))
    named = {("finetuned", "oracle"), ("task_arithmetic", "none"), ("tr_merging", "tr"), ("twin_merging", "twin"),
             ("dawin", "dawin"), ("finetuned", "mad")}
    assert {(m, r) for m, r, _ in lora_rows} == named
    assert {(m, r) for m, r, metric in lora_rows if metric == "routing_accuracy"} == named - {("finetuned", "oracle"), ("task_arithmetic", "none")}
    assert lora[lora["metric"].isin(["accuracy", "routing_accuracy"])]["value"].between(0, 1).all()
    assert re.search(r"\(temperature, top_k\) = \(", output)  # TR's validation choice is printed
    dynamic = full_table[full_table["router"].isin(["wemoe", "mow"])]
    assert set(zip(dynamic["method"], dynamic["router"], dynamic["metric"], strict=True)) == {
        ("wemoe", "wemoe", metric) for metric in ("accuracy", "peak_memory_bytes")
    } | {("mow_merging", "mow", metric) for metric in ("accuracy", "peak_memory_bytes", "routing_accuracy")}
    # wall-clock figures live only in the uncached timing files (reports/timings), never in the cached results
    assert not set(full_table["metric"]) & set(TIMING_METRICS)
    timings = read_timings((project / "reports" / "timings").glob("*.json"))
    assert set(timings["metric"]) == set(TIMING_METRICS) and (timings["value"] > 0).all()
    report = (project / "reports" / "report.md").read_text()
    assert "wemoe (task-unknown, per-input weights)" in report and "| MoW-Merging" in report
    table = full_table[full_table["suite"] == "vision8"]
    accuracy = table[table["metric"] == "accuracy"]
    rows = set(zip(accuracy["method"], accuracy["router"], accuracy["task"], strict=True))
    known = {(m, "oracle", t) for m in ("pretrained", "finetuned", *methods) for t in tasks}  # adapted: router none
    unknown = {(m, r, t) for m in route["methods"] for r in route["routers"] for t in tasks}
    unknown |= {(m, "none", t) for m in route["static"] for t in tasks}
    unknown |= {(m, r, t) for m, r in (("wemoe", "wemoe"), ("mow_merging", "mow")) for t in tasks}
    assert rows == known | unknown
    assert table[table["metric"].isin(["accuracy", "routing_accuracy"])]["value"].between(0, 1).all()
    memory = table[table["metric"] == "peak_memory_bytes"]
    assert set(memory["task"]) == {"all"} and (memory["value"] > 0).all()
    # peak memory for every (bank, router), static and per-input model; seconds per input where serving ran end to
    # end: the static models, MAD (the other routers are scored by one shared pass, routing/shared_pass.py) and the
    # per-input methods; seconds per step for each adaptation
    per_model = len(route["static"]) + len(params["dynamic"]["methods"])
    assert len(memory) == len(route["methods"]) * len(route["routers"]) + per_model
    served = len(route["methods"]) * ("mad" in route["routers"])
    seconds = timings[(timings["suite"] == "vision8") & (timings["metric"] == "seconds_per_input")]
    assert len(seconds) == served + per_model and set(seconds["task"]) == {"all"}
    assert set(timings[timings["metric"] == "median_seconds_per_step"]["method"]) == set(params["adapt"]["methods"])
    assert len(timings[timings["suite"] == "vision8-lora"]) == len(params["lora"]["methods"])
    assert re.search(r"tall_ta \w+: lam = 0\.[26] \(validation", output)  # the per-task lambda is printed
    assert re.search(r"ties scale = (0\.6|1\.0) for every task \(mean validation", output)  # the shared scale too
    assert (project / "reports" / "metrics.json").exists() and (project / "reports" / "results.csv").exists()
    report = (project / "reports" / "report.md").read_text()
    assert "Table 2 shape" in report and "figures/routing_confusion.png" in report
    assert "Table 6 shape" in report and "figures/ranks_adarank_ta.png" in report
    assert re.search(r"adapt@adarank_ta: 2 steps, entropy [\d.]+ -> [\d.]+", output)
    assert (project / "reports" / "figures" / "bhattacharyya.png").read_bytes()[:4] == b"\x89PNG"
    assert "TR-Merging's temperature and top-K" in report and "Serving cost of the task-unknown methods" in report
    assert "# Regime" in report and "# Paper vs this benchmark" in report
    assert re.search(r"task identity from base features \(logistic regression\), test +[\d.]+ ", output)  # regime printed


def test_the_pipelines_merge_equals_the_api_and_the_cli(project: Path, tmp_path: Path) -> None:
    """merge@ties' stored model is what ``mergeflow.merge`` and ``mergeflow merge`` give on the pipeline's own
    base and experts with the hyperparameters the stage recorded (its validation-chosen scale included)."""
    import torch

    import mergeflow as mf
    from mergeflow.cli import main
    from mergeflow.merging_io import load_merged
    from mergeflow.statedict.subdict import visual_state_dict

    artifacts = project / "artifacts"
    stored, meta = load_merged(artifacts / "merged" / "ties.safetensors")
    settings = {**meta["info"]["hyperparameters"], **meta["info"]["selected"]}
    assert set(settings) == {"k", "aggregate", "scale"}
    tasks = meta["info"]["tasks"]
    base = visual_state_dict(mf.load_checkpoint(artifacts / "base" / "clip.safetensors"))
    experts = {task: mf.load_checkpoint(artifacts / "experts" / f"{task}.safetensors") for task in tasks}
    api = mf.merge("ties", base, experts, **settings)
    mf.save_checkpoint(base, tmp_path / "base_visual.safetensors")
    argv = ["merge", "--method", "ties", "--base", str(tmp_path / "base_visual.safetensors"), "--out", str(tmp_path / "cli_ties.safetensors")]
    argv += [f"--expert={task}={artifacts / 'experts' / task}.safetensors" for task in tasks]
    argv += [f"--set={key}={value}" for key, value in settings.items()]
    assert main(argv) == 0
    cli = mf.load_checkpoint(tmp_path / "cli_ties.safetensors")
    assert isinstance(stored, dict) and set(stored) == set(api) == set(cli)
    for key in stored:
        assert torch.equal(stored[key], api[key]) and torch.equal(stored[key], cli[key]), key


def test_second_run_is_a_no_op(project: Path) -> None:
    assert ran(dvc(project, "repro")) == set()


def test_a_flipped_byte_in_an_output_is_noticed_and_rebuilt(project: Path) -> None:
    """Issue 18 item 5: one bit of an expert's weights (past the safetensors header: the file still loads) changed
    in the workspace; `dvc status` names the stage, and `dvc repro` restores the recorded bytes (from the run cache:
    the stage's deps and params are unchanged, so DVC checks out the output it recorded for them instead of
    rerunning) and nothing downstream reruns. (A flip that keeps the file's mtime and size is not noticed: DVC
    trusts its state database for unchanged files.)"""
    task = yaml.safe_load((project / "params.yaml").read_text())["suite"]["tasks"][0]
    expert = project / "artifacts" / "experts" / f"{task}.safetensors"
    original = expert.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    expert.write_bytes(bytes(flipped))
    assert f"finetune@{task}" in stale_stages(project)
    output = dvc(project, "repro")
    assert f"Stage 'finetune@{task}' is cached - skipping run, checking out outputs" in output, output[-3000:]
    assert ran(output) == set(), output[-3000:]
    assert expert.read_bytes() == original
    assert stale_stages(project) == set()
