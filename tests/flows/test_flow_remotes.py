"""A team-shared remote cache in a shared directory, with the flow's exchange mode: a stage runs in another clone (a
worker), which pushes; the orchestrating clone pulls it from the shared directory (the run cache, with the outputs),
and `dvc repro` there is a no-op. (The S3 remote and a teammate's clone of a whole cold run: tests/test_pipeline.py,
which shares that run.)"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from flowkit import copy_smoke_project, outcomes, run_flow, use_project
from pipeline_kit import clone, commit, dvc, ran

from mergeflow.profiles import resolve_profile

pytestmark = pytest.mark.pipeline

FIRST = resolve_profile(Path(__file__).resolve().parents[2] / "profiles" / "smoke.yaml")["suite"]["tasks"][0]
STAGE = f"prepare@{FIRST}"  # one real stage of the pipeline: a few seconds


def test_shared_directory_remote_with_the_flow_exchange_mode(
    flows_pipeline: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared-cache"  # e.g. an NFS mount every teammate and worker sees
    orchestrator = copy_smoke_project(tmp_path / "orchestrator", git=True)
    dvc(orchestrator, "remote", "add", "-d", "shared", str(shared))
    commit(orchestrator, "project with a shared remote")
    worker = clone(orchestrator, tmp_path / "worker")  # another machine's clone

    use_project(worker, monkeypatch)
    monkeypatch.setenv(flows_pipeline.CLONE_ENV, str(worker))  # what the worker machine sets for itself
    state, summary = run_flow(flows_pipeline, orchestrator, targets=[STAGE], exchange=True)
    assert state.is_completed() and outcomes(summary) == {STAGE: "ran"}
    worker_log = (worker / flows_pipeline.DEFAULT_LOG_DIR / f"{STAGE}.log").read_text()
    assert "repro --pull" in worker_log and "push --run-cache" in worker_log
    # The orchestrator ran nothing itself: it restored the stage from the run cache the worker pushed.
    collected = (orchestrator / flows_pipeline.DEFAULT_LOG_DIR / "_collect.log").read_text()
    assert f"Stage '{STAGE}' is cached - skipping run" in collected and "Running stage" not in collected
    assert (orchestrator / "artifacts" / "data" / FIRST / "train.parquet").exists()
    assert ran(dvc(orchestrator, "repro", STAGE)) == set()  # a no-op there
