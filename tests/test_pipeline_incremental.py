"""What one change reruns in the real DVC pipeline on the smoke profile: one merging method's hyperparameter reruns
only that method (and what reads it), a routing hyperparameter only calibration and what follows, a TR-Merging one
only TR, one task's learning rate only its expert chain, and a forced rerun of a fine-tuning stage reproduces the same
expert bit for bit.

The tests work, in this order, on one copy of the session's shared cold run (pipeline_kit.shared_cold_run), which
tests/test_pipeline.py builds: this file is handed out right after the cold-run files (tests/conftest.py), and waits
for that run if it is not done yet."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from pipeline_kit import copy_of, dvc, ran, shared_cold_run, stale_stages

pytestmark = pytest.mark.pipeline


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This file's working copy of the cold run: the tests below change its params and rerun."""
    return copy_of(shared_cold_run(tmp_path_factory)[0], tmp_path_factory.mktemp("incremental") / "project")


def test_one_merge_hyperparameter_reruns_only_that_method(project: Path) -> None:
    """tall_ta's λ grid: its merge and its routed evaluation rerun (and what collects results), nothing else. (tall_ta
    rather than ties: ties is also the smoke profile's feature model, static baseline and MoW's rule, so changing it
    reruns most of the graph, WEMoE's training included — minutes of CI for the same point.)"""
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    assert "tall_ta" in params["merge"]["methods"] and len(params["merge"]["methods"]) > 1
    params["merge"]["tall_ta"]["lam_grid"] = [0.4, 0.6]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    executed = ran(dvc(project, "repro"))
    assert {"merge@tall_ta", "evaluate_routed@tall_ta", "report"} <= executed
    # evaluate_static and analyze_routing read the models route.* names out of the whole artifacts/merged folder (DVC
    # cannot list a folder's files from a params list), so any merge's new output reruns them: a known
    # over-invalidation, named in README's pipeline notes; every other merge and everything upstream stays
    folder_readers = {"evaluate_static", "analyze_routing"}
    assert executed <= {"merge@tall_ta", "evaluate_routed@tall_ta", "results", "regime", "report"} | folder_readers
    assert not any(stage.startswith(("merge@", "finetune@", "adapt@", "serve_")) and stage != "merge@tall_ta" for stage in executed)


def test_a_routing_hyperparameter_reruns_only_calibration_and_what_follows(project: Path) -> None:
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["route"]["eps"] = 1e-3
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    executed = ran(dvc(project, "repro"))
    calibration = {"calibrate"}
    routed = {f"evaluate_routed@{m}" for m in params["route"]["methods"]}
    assert calibration | routed | {"analyze_routing"} <= executed <= calibration | routed | {"analyze_routing", "results", "regime", "report"}


def test_a_tr_merging_hyperparameter_reruns_only_tr(project: Path) -> None:
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["lora"]["tr"]["temperatures"] = [0.1, 1.0]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    part = project / "reports" / "parts" / "lora" / "tr.parquet"
    before = _md5(part)
    executed = ran(dvc(project, "repro"))
    # the report always follows (its timings changed); the results table and the regime only if TR's accuracy rows
    # did (timings are no longer in the parts, so an unchanged selection leaves the part byte-identical)
    downstream = {"results", "regime"} if _md5(part) != before else set()
    assert executed == {"serve_lora@tr", "report"} | downstream


def test_one_learning_rate_reruns_only_that_expert_chain(project: Path) -> None:
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    changed, untouched = params["suite"]["tasks"][0], params["suite"]["tasks"][1]
    untouched_expert = _md5(project / "artifacts" / "experts" / f"{untouched}.safetensors")
    params["finetune"][changed]["lr"] *= 3
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    # Reproduce the chain's ends only; the merges downstream (every merge reads every task vector) are checked
    # by `dvc status` instead of rerun, which keeps this test fast.
    executed = ran(dvc(project, "repro", f"finetune@{changed}", "evaluate_finetuned"))
    assert executed == {f"finetune@{changed}", "evaluate_finetuned"}
    assert _md5(project / "artifacts" / "experts" / f"{untouched}.safetensors") == untouched_expert
    readers = {f"merge@{method}" for method in params["merge"]["methods"]}  # what reads the task vectors directly
    readers |= {f"adapt@{method}" for method in params["adapt"]["methods"]} | {"analyze_adaptation"}
    readers |= {f"serve_dynamic@{method}" for method in params["dynamic"]["methods"]}  # WEMoE/MoW mix task vectors per input
    assert readers <= stale_stages(project) <= readers | {"results"}


def test_forced_rerun_reproduces_the_expert_exactly(project: Path) -> None:
    task = yaml.safe_load((project / "params.yaml").read_text())["suite"]["tasks"][1]
    expert = project / "artifacts" / "experts" / f"{task}.safetensors"
    before = _md5(expert)
    assert ran(dvc(project, "repro", "--force", "--single-item", f"finetune@{task}")) == {f"finetune@{task}"}
    assert _md5(expert) == before
