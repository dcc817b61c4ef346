"""Scheduling: `python -m flows.deploy` creates a cron deployment on a real `prefect server start --host 127.0.0.1`
and serves it; a run triggered with `prefect deployment run` completes, and the scheduler has queued the upcoming
cron runs. Every process started here is stopped by its PID."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from flowkit import toy_project
from pipeline_kit import VENV_BIN, project_env, run, start, stop

pytestmark = pytest.mark.pipeline


def _deployment(name: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            try:
                return client.read_deployment_by_name(f"mergeflow-pipeline/{name}")
            except Exception:  # noqa: BLE001 - not created yet
                time.sleep(0.5)
    raise AssertionError(f"deployment {name} was not created within {timeout} s")


def test_a_served_cron_deployment_runs_when_triggered(prefect_api: str, tmp_path: Path, root: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    toy = toy_project(tmp_path / "toy")
    name = f"test-{tmp_path.name[-12:]}".replace("_", "-")
    env = project_env(toy, PREFECT_API_URL=prefect_api, PREFECT_RUNNER_POLL_FREQUENCY="2")  # pick the run up quickly
    serve_log = tmp_path / "serve.log"
    serve = start([sys.executable, "-m", "flows.deploy", "--repo", str(toy), "--name", name, "--cron", "0 2 * * *",
                   "--retry-delay", "0", "flaky"], serve_log, env, cwd=root)
    try:
        deployment = _deployment(name)
        assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]
        assert deployment.parameters["root"] == str(toy) and deployment.parameters["targets"] == ["flaky"]
        triggered = run([str(VENV_BIN / "prefect"), "deployment", "run", f"mergeflow-pipeline/{name}", "--watch",
                         "--watch-timeout", "180"], root, env, check=False)
        assert triggered.returncode == 0, triggered.stdout[-3000:] + serve_log.read_text()[-3000:]
        assert (toy / "flaky.txt").read_text() == "input and flaky"  # flaky.py failed once, then its retry passed

        with get_client(sync_client=True) as client:
            flt = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])))
            only_this = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            assert len(client.read_flow_runs(flow_run_filter=flt, deployment_filter=only_this)) == 1
            upcoming = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
            deadline = time.monotonic() + 30
            while not client.read_flow_runs(flow_run_filter=upcoming, deployment_filter=only_this):
                assert time.monotonic() < deadline, "the scheduler queued no cron run"
                time.sleep(1)
    finally:
        stop(serve)
    assert serve.returncode is not None
