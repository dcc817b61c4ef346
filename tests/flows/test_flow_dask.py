"""Beyond one process: the stage tasks run on an existing Dask cluster (a `dask scheduler` and a `dask worker`
started here, as on other machines), through prefect-dask's runner given the scheduler's address."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from flowkit import outcomes, run_flow, toy_project, use_project
from pipeline_kit import VENV_BIN, free_port, project_env, start, stop

pytestmark = pytest.mark.pipeline


def test_stages_run_on_an_existing_dask_cluster(
    flows_pipeline: ModuleType, prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root: Path
) -> None:
    toy = use_project(toy_project(tmp_path / "toy"), monkeypatch)
    address = f"tcp://127.0.0.1:{free_port()}"
    env = project_env(toy, PREFECT_API_URL=prefect_api)  # workers report task runs to the same Prefect API
    worker_log = tmp_path / "worker.log"
    scheduler = start([str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                       "--no-dashboard"], tmp_path / "scheduler.log", env, cwd=root)
    worker = None
    try:
        worker = start([str(VENV_BIN / "dask"), "worker", address, "--nworkers", "1", "--nthreads", "2",
                        "--no-dashboard"], worker_log, env, cwd=root)
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
        state, summary = run_flow(flows_pipeline, toy, targets=["flaky"], dask_address=address, max_concurrent=2)
        assert state.is_completed(), state.message
        assert outcomes(summary) == {"ok": "ran", "flaky": "ran"}
        assert {row["stage"]: row["attempts"] for row in summary["stages"]} == {"ok": 1, "flaky": 2}
        # The stage tasks ran in the worker process: their Prefect logs are in its output.
        text = worker_log.read_text()
        assert "Task run 'ok'" in text and "Task run 'flaky'" in text
    finally:
        if worker is not None:
            stop(worker)
        stop(scheduler)
