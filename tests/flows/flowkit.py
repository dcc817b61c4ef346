"""Helpers for the flow tests: scratch copies of the project, a toy DVC project, and flow runs (the processes they
start and stop come from pipeline_kit)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline_kit import STAGE_ENV, copy_project, dvc, git_project, project_env


def use_project(project: Path, monkeypatch: Any) -> Path:
    """Make this process's environment the project's, for the stage subprocesses an in-process flow starts."""
    for key in ("PATH", "PYTHONPATH", *STAGE_ENV):
        monkeypatch.setenv(key, project_env(project)[key])
    return project


def copy_smoke_project(dest: Path, git: bool = False) -> Path:
    """The real pipeline at toy size, as tests/test_pipeline.py builds it: smoke profile as params.yaml."""
    return git_project(dest) if git else copy_project(dest, "smoke.yaml")


TOY_DVC_YAML = """\
stages:
  ok:
    cmd: python -c "open('ok.txt', 'w').write(open('input.txt').read())"
    deps:
      - input.txt
    outs:
      - ok.txt
  flaky:
    cmd: python flaky.py
    deps:
      - ok.txt
      - flaky.py
    outs:
      - flaky.txt
  broken:
    cmd: python -c "import sys; print('boom'); sys.exit(3)"
    deps:
      - ok.txt
    outs:
      - broken.txt
  after_broken:
    cmd: python -c "open('after.txt', 'w').write('after')"
    deps:
      - broken.txt
    outs:
      - after.txt
"""

FLAKY_PY = """\
import pathlib, sys

marker = pathlib.Path("flaky.attempts")  # not a DVC output: counts attempts across retries
attempt = int(marker.read_text()) + 1 if marker.exists() else 1
marker.write_text(str(attempt))
if attempt == 1:
    print("flaky: failing on purpose on the first attempt")
    sys.exit(1)
pathlib.Path("flaky.txt").write_text(pathlib.Path("ok.txt").read_text() + " and flaky")
"""


def toy_project(dest: Path, stages: str = TOY_DVC_YAML) -> Path:
    """A DVC project with stages that take a second: for failures, retries, the CLI and deployments."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "dvc.yaml").write_text(stages)
    (dest / "flaky.py").write_text(FLAKY_PY)
    (dest / "input.txt").write_text("input")
    dvc(dest, "init", "--no-scm", "-q")
    return dest


def run_flow(module: ModuleType, project: Path, **options: Any) -> tuple[Any, dict]:
    """Run the pipeline flow in this process on ``project``; return its final state and its summary."""
    options.setdefault("retry_delay_seconds", 0.0)
    state = module.pipeline_flow(root=str(project), return_state=True, **options)
    value = state.result(raise_on_failure=False)
    summary = value.summary if isinstance(value, module.PipelineFailed) else value
    assert isinstance(summary, dict), value
    return state, summary


def outcomes(summary: dict) -> dict[str, str]:
    return {row["stage"]: row["outcome"] for row in summary["stages"]}
