"""params.yaml validation: every mistake stops with one message that names the key; stages exit 2 and write nothing."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mergeflow.errors import MergeflowError
from mergeflow.params import load_params, parse_params


@pytest.fixture
def raw(root: Path) -> dict:
    return yaml.safe_load((root / "params.yaml").read_text())


def test_shipped_params_and_profiles_are_valid(root: Path) -> None:
    params = load_params(root / "params.yaml")
    assert len(params.suite.tasks) >= 8
    load_params(root / "profiles" / "smoke.yaml")
    assert params.merge.methods == [  # the default suite runs every static method of the registry
        "weight_averaging", "task_arithmetic", "ties", "tall_ta", "tall_ties", "consensus_ta", "emr", "tsv_m", "cart",
        "iso_c", "iso_cts",
    ]
    assert params.merge.method("tall_ta").grids == {"lam": [0.2, 0.3, 0.4, 0.5, 0.6]}
    assert params.merge.method("tsv_m").hyperparameters == {"rank": None}
    for method in ("task_arithmetic", "ties", "tsv_m", "cart", "iso_c", "iso_cts"):  # chosen on validation, not defaults
        assert "scale" in params.merge.method(method).grids, method
    assert "lam" in params.merge.method("consensus_ta").grids
    assert params.lora.blocks == {method: {} for method in params.lora.methods}  # every LoRA method at its declared defaults
    assert params.lora.settings("twin")["shared_scale"] == 0.29 and params.lora.settings("tr")["top_k"] == [1, 2, 3, 8]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda p: p["finetune"]["land_cover"].__setitem__("lr", "fast"), r"finetune\.land_cover\.lr: .*valid number"),
        (lambda p: p["pretrain"].__setitem__("steps", 2.5), r"pretrain\.steps: .*valid integer"),
        (lambda p: p["suite"].__setitem__("sead", 1), r"suite\.sead: unknown key"),
        (lambda p: p.__setitem__("merge_everything", True), r"merge_everything: unknown key"),
        (lambda p: p["suite"]["tasks"].append("mnist"), r"suite\.tasks: unknown task 'mnist'"),
        (lambda p: p["finetune"].pop("land_cover"), r"finetune\.land_cover: missing"),
        (lambda p: p["finetune"].__setitem__("svhn", p["finetune"]["land_cover"]), r"finetune\.svhn: not a task"),
        (lambda p: p["suite"]["samples"].__setitem__("test", 0), r"suite\.samples\.test: .*greater than 0"),
        (lambda p: p["backbone"].pop("model"), r"backbone\.model: Field required"),
        (lambda p: p["merge"].__setitem__("magic", {}), r"merge\.magic: unknown merging method 'magic'"),
        (lambda p: p["merge"]["methods"].append("magic"), r"merge\.methods: unknown merging method 'magic'"),
        (lambda p: p["merge"]["ties"].__setitem__("kk", 0.1), r"merge\.ties\.kk: ties has no hyperparameter 'kk'"),
        (lambda p: p["merge"]["ties"].__setitem__("k", "big"), r"merge\.ties\.k: must be a number, got 'big'"),
        (lambda p: p["merge"]["ties"].__setitem__("k", 2.0), r"merge\.ties\.k: must be in \(0, 1\]"),
        (lambda p: p["merge"]["ties"].__setitem__("aggregate", "max"), r"merge\.ties\.aggregate: must be one of"),
        (lambda p: p["merge"]["cart"].__setitem__("svd", "fast"), r"merge\.cart\.svd: must be one of exact, lowrank"),
        (lambda p: p["merge"]["consensus_ta"].__setitem__("min_agreement", 1.5), r"min_agreement: must be an integer"),
        (lambda p: p["merge"]["tall_ta"].__setitem__("lam_grid", [0.2, "x"]), r"merge\.tall_ta\.lam_grid: must be a number"),
        (lambda p: p["merge"]["tall_ta"].__setitem__("lam_grid", []), r"merge\.tall_ta\.lam_grid: must be a non-empty list"),
        (lambda p: p["merge"]["tall_ta"].__setitem__("lam", 0.3), r"merge\.tall_ta\.lam: give lam or lam_grid, not both"),
        (lambda p: p["merge"]["iso_cts"].pop("common") and p["merge"]["iso_cts"].__setitem__("common_grid", [0.5, 0.8]),
         r"merge\.iso_cts: one grid at a time, got scale_grid, common_grid"),
        (lambda p: p["merge"]["ties"].__setitem__("scale", 1.0), r"merge\.ties\.scale: give scale or scale_grid, not both"),
        (lambda p: p["merge"]["cart"].__setitem__("scale_grid", [2.0, 2.0]), r"merge\.cart\.scale_grid: has duplicate values"),
        (lambda p: p["merge"]["iso_c"].__setitem__("scale_grid", []), r"merge\.iso_c\.scale_grid: must be a non-empty list"),
        (lambda p: p["merge"]["consensus_ta"].__setitem__("lam_grid", [0.2, -1.0]), r"consensus_ta\.lam_grid: must be >= 0"),
        (lambda p: p["merge"].pop("ties"), r"merge\.ties: missing"),
        (lambda p: p["merge"]["methods"].append("ties"), r"merge\.methods: a method is listed twice"),
        (lambda p: p["merge"].__setitem__("emr", 3), r"merge\.emr: expected a mapping"),
        (lambda p: p["route"]["routers"].append("oracle_magic"), r"route\.routers: unknown router 'oracle_magic'"),
        (lambda p: p["route"]["methods"].append("ties"), r"route\.methods: 'ties' is not a mask-bank method"),
        (lambda p: p["route"]["static"].append("tall_ta"), r"route\.static: 'tall_ta' is not a single-model method"),
        (lambda p: p["route"].__setitem__("feature_model", "ties_v2"), r"route\.feature_model: 'ties_v2' must be one of"),
        (lambda p: p["route"].__setitem__("eps", -1.0), r"route\.eps: .*greater than 0"),
        (lambda p: p["route"]["reject"].__setitem__("quantile", 1.0), r"route\.reject\.quantile: .*less than 1"),
        (lambda p: p["route"]["analysis"].__setitem__("seen_tasks", list(p["suite"]["tasks"])), r"leave at least one task unseen"),
        (lambda p: p["adapt"]["methods"].append("adarank_magic"), r"adapt\.methods: unknown adaptation method 'adarank_magic'"),
        (lambda p: p["adapt"]["adarank_cart"].__setitem__("rank", 1.5), r"adapt\.adarank_cart: rank must be in \[0, 1\]"),
        (lambda p: p["adapt"].__setitem__("learn", "all"), r"adapt\.learn: Input should be 'both', 'lambda' or 'masks'"),
        (lambda p: p["lora"]["methods"].append("magic"), r"lora\.methods: unknown LoRA method 'magic'; known: experts"),
        (lambda p: p["lora"].__setitem__("magic", {}), r"lora\.magic: unknown LoRA method 'magic'"),
        (lambda p: p["lora"].pop("twin"), r"lora\.twin: missing"),
        (lambda p: p["lora"]["mad"].__setitem__("sampels", 8), r"lora\.mad: mad has no hyperparameter 'sampels'"),
        (lambda p: p["lora"]["tr"].__setitem__("temperatures", []), r"lora\.tr: temperatures must be a non-empty list"),
        (lambda p: p["lora"]["tr"].__setitem__("top_k", [1, 9]), r"lora\.tr\.top_k: \[9\] exceed the 8 tasks"),
        (lambda p: p["lora"]["tr"].__setitem__("renormalize", "no"), r"lora\.tr: renormalize must be true or false"),
        (lambda p: p["lora"]["twin"].__setitem__("dropout", 1.0), r"lora\.twin: dropout must be in \[0, 1\)"),
        (lambda p: p["lora"]["dawin"].__setitem__("mode", "mean"), r"lora\.dawin: mode must be one of per_input, dataset_mean"),
        (lambda p: p["lora"]["train"].__setitem__("stpes", 3), r"lora\.train\.stpes: unknown key"),
    ],
)
def test_mistakes_name_the_key(raw: dict, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    bad = copy.deepcopy(raw)
    edit(bad)
    with pytest.raises(MergeflowError, match=expected):
        parse_params(bad)


def test_invalid_yaml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("suite: [unclosed\n")
    with pytest.raises(MergeflowError, match="not valid YAML"):
        load_params(path)


def test_stage_exits_2_with_one_message_and_writes_nothing(root: Path, raw: dict, tmp_path: Path) -> None:
    raw["finetune"]["land_cover"]["lr"] = "fast"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "tasks.prepare", "land_cover", "--params", str(tmp_path / "params.yaml")],
                          cwd=tmp_path, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "finetune.land_cover.lr" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "artifacts").exists()


def test_cli_check_params(root: Path) -> None:
    from mergeflow.cli import main

    assert main(["check-params", str(root / "params.yaml")]) == 0
    assert main(["check-params", str(root / "no-such.yaml")]) == 2
