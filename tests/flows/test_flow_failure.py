"""A failing stage is retried, then fails the flow cleanly: one readable error, the stages that depend on it are not
run, independent stages still finish (with --keep-going), and dvc.lock stays valid."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from flowkit import outcomes, run_flow, toy_project, use_project
from pipeline_kit import dvc, project_env, run


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_project(toy_project(tmp_path / "toy"), monkeypatch)


def test_a_failing_stage_is_retried_then_fails_the_flow(flows_pipeline: ModuleType, toy: Path) -> None:
    state, summary = run_flow(flows_pipeline, toy, retries=1, keep_going=True, max_concurrent=2)
    assert state.is_failed()
    assert "stage(s) failed: broken; not run because of it: after_broken" in state.message
    rows = {row["stage"]: row for row in summary["stages"]}
    assert outcomes(summary) == {"ok": "ran", "flaky": "ran", "broken": "failed", "after_broken": "skipped"}
    assert rows["flaky"]["attempts"] == 2  # failed once on purpose, then succeeded on its retry
    assert rows["broken"]["attempts"] == 2  # 1 retry, then the run gives up on it
    log = Path(rows["ok"]["log"]).parent / "broken.log"
    assert log.read_text().splitlines().count("boom") == 2 and "attempt 2" in log.read_text()
    # dvc.lock holds exactly the stages that succeeded, and DVC agrees they are up to date.
    assert set(yaml.safe_load((toy / "dvc.lock").read_text())["stages"]) == {"ok", "flaky"}
    assert "up to date" in dvc(toy, "status", "flaky")


def test_the_cli_exits_non_zero_with_one_readable_line(prefect_api: str, toy: Path, root: Path) -> None:
    proc = run([sys.executable, "-m", "flows.pipeline", "--repo", str(toy), "--retries", "0", "after_broken"],
               root, project_env(toy), check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "python -m flows.pipeline: error: stage(s) failed: broken; not run because of it: after_broken"
    assert "broken" in proc.stdout and "failed" in proc.stdout  # the results table on stdout
