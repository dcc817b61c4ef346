"""The flow on the real pipeline (smoke profile, a few stages selected with targets): it leaves the same dvc.lock as
`dvc repro` (the session's shared uninterrupted smoke run), runs the two fine-tuning stages at the same time without
corrupting dvc.lock, reruns exactly the stages a parameter change affects (including the descendants `dvc status` does
not report), and a no-op run is quick."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from flowkit import copy_smoke_project, outcomes, run_flow, use_project
from pipeline_kit import dvc, shared_cold_run

from flows.dvc_graph import plan
from mergeflow.profiles import resolve_profile

pytestmark = pytest.mark.pipeline

TASKS: list[str] = resolve_profile(Path(__file__).resolve().parents[2] / "profiles" / "smoke.yaml")["suite"]["tasks"][:2]
FIRST, SECOND = TASKS
TARGETS = [f"finetune@{FIRST}", "evaluate_finetuned"]  # 7 stages: prepare x2, pretrain, heads, finetune x2, its reader


@pytest.fixture(scope="module")
def flow_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the project for the flow (the reference is the session's shared `dvc repro` of the same)."""
    return copy_smoke_project(tmp_path_factory.mktemp("flow-pipeline") / "flow")


@pytest.fixture
def in_flow_project(flow_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stage subprocesses the in-process flow starts use the copied library and stages."""
    return use_project(flow_copy, monkeypatch)


def _ran(summary: dict) -> set[str]:
    return {stage for stage, outcome in outcomes(summary).items() if outcome == "ran"}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _content(path: Path) -> object:
    """What a file or folder holds, with a safetensors header's JSON key order ignored."""
    if path.is_dir():
        return {str(p.relative_to(path)): _content(p) for p in sorted(path.rglob("*")) if p.is_file()}
    data = path.read_bytes()
    if path.suffix != ".safetensors":
        return hashlib.md5(data).hexdigest()
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), hashlib.md5(data[8 + size :]).hexdigest()


def test_the_flow_leaves_the_same_dvc_lock_and_runs_experts_concurrently(
    flows_pipeline: ModuleType, in_flow_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    flow_project = in_flow_project
    # The reference: one expert's chain as plain `dvc repro` built it (the flow runs a superset: both experts' chains).
    repro_project, _ = shared_cold_run(tmp_path_factory)
    expected = {f"prepare@{FIRST}", "pretrain", "heads", f"finetune@{FIRST}"}

    # What the experts need first (two stages at a time), so that both experts become ready at the same moment ...
    inputs = [f"prepare@{t}" for t in TASKS] + ["heads"]
    planned = set(plan(flow_project, inputs).order)  # the targets and everything upstream, all new
    state, first = run_flow(flows_pipeline, flow_project, targets=inputs, max_concurrent=2)
    assert state.is_completed() and _ran(first) == planned and {*inputs, "pretrain"} <= planned
    # ... then the experts, side by side, and what reads both after them.
    state, second = run_flow(flows_pipeline, flow_project, targets=TARGETS, max_concurrent=2)
    assert state.is_completed()
    assert _ran(second) == {f"finetune@{FIRST}", f"finetune@{SECOND}", "evaluate_finetuned"}
    assert expected <= _ran(first) | _ran(second)
    rows = {row["stage"]: row for row in second["stages"]}
    a, b = rows[f"finetune@{FIRST}"], rows[f"finetune@{SECOND}"]
    assert max(a["started"], b["started"]) < min(a["finished"], b["finished"]), "the two experts did not overlap"
    assert rows["evaluate_finetuned"]["started"] >= max(a["finished"], b["finished"])  # never before its upstream stages

    # dvc.lock: every entry the flow wrote equals the one `dvc repro` wrote (cmd, params, deps and outs with their
    # hashes), except the known byte-level nondeterminism of `heads` (its files' metadata key order changes from
    # process to process; `dvc repro` alone shows it too): there the files must hold the same tensors and metadata.
    flow_lock = yaml.safe_load((flow_project / "dvc.lock").read_text())["stages"]
    repro_lock = yaml.safe_load((repro_project / "dvc.lock").read_text())["stages"]
    assert set(repro_lock) >= expected and set(flow_lock) == _ran(first) | _ran(second) >= expected
    differing: set[str] = set()
    for stage in sorted(expected):
        flow_entry, repro_entry = flow_lock[stage], repro_lock[stage]
        assert flow_entry.keys() == repro_entry.keys() and flow_entry["cmd"] == repro_entry["cmd"], stage
        assert flow_entry.get("params") == repro_entry.get("params"), stage
        for kind in ("deps", "outs"):
            for a, b in zip(flow_entry.get(kind, []), repro_entry.get(kind, []), strict=True):
                assert a["path"] == b["path"], stage
                if a != b:
                    assert _content(flow_project / a["path"]) == _content(repro_project / b["path"]), (stage, a)
                    differing.add(a["path"])
    assert differing <= {"artifacts/heads", *(f"artifacts/heads/{t}.safetensors" for t in TASKS)}, differing
    assert "up to date" in dvc(flow_project, "status", *TARGETS)

    # The run left a markdown artifact with its stage table in Prefect.
    from prefect.artifacts import Artifact

    artifact = Artifact.get(flows_pipeline.ARTIFACT_KEY)
    assert artifact is not None and f"`finetune@{SECOND}` | ran" in str(artifact.data)


def test_one_parameter_reruns_exactly_the_affected_stages(flows_pipeline: ModuleType, in_flow_project: Path) -> None:
    project = in_flow_project
    untouched = _md5(project / "artifacts" / "experts" / f"{FIRST}.safetensors")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"][SECOND]["lr"] *= 3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    the_plan = plan(project, TARGETS)
    assert the_plan.changed == {f"finetune@{SECOND}"}  # all that `dvc status` reports
    assert the_plan.order == (f"finetune@{SECOND}", "evaluate_finetuned")  # plus what reads it
    state, summary = run_flow(flows_pipeline, project, targets=TARGETS, max_concurrent=2)
    assert state.is_completed()
    assert outcomes(summary) == {f"finetune@{SECOND}": "ran", "evaluate_finetuned": "ran"}
    assert _md5(project / "artifacts" / "experts" / f"{FIRST}.safetensors") == untouched


def test_a_no_op_flow_run_is_quick(flows_pipeline: ModuleType, in_flow_project: Path) -> None:
    state, summary = run_flow(flows_pipeline, in_flow_project, targets=TARGETS)
    assert state.is_completed() and summary["stages"] == []
    print(f"no-op flow run: {summary['seconds']:.1f} s inside the flow")
    assert summary["seconds"] < 15
