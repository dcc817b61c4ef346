"""Helpers for the flow tests: scratch copies of the project, a toy DVC project, the dvc CLI, and processes that
are always stopped by the PID this test started (never by name)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline_kit import GIT, STAGE_ENV, copy_project, dvc, project_env, run


def use_project(project: Path, monkeypatch: Any) -> Path:
    """Make this process's environment the project's, for the stage subprocesses an in-process flow starts."""
    for key in ("PATH", "PYTHONPATH", *STAGE_ENV):
        monkeypatch.setenv(key, project_env(project)[key])
    return project


def copy_smoke_project(dest: Path, git: bool = False) -> Path:
    """The real pipeline at toy size, as tests/test_pipeline.py builds it: smoke profile as params.yaml."""
    copy_project(dest, "smoke.yaml", init=False)
    _init(dest, git)
    return dest


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
    _init(dest, git=False)
    return dest


def _init(dest: Path, git: bool) -> None:
    if git:
        run([*GIT, "init", "-q"], dest)
        dvc(dest, "init", "-q")
    else:
        dvc(dest, "init", "--no-scm", "-q")


def commit(repo: Path, message: str) -> None:
    run([*GIT, "add", "-A"], repo)
    run([*GIT, "commit", "-q", "-m", message], repo)


def clone(source: Path, dest: Path) -> Path:
    run([*GIT, "clone", "-q", str(source), str(dest)], source.parent)
    return dest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(cmd: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """Start a background process in its own process group, so that stop() ends it and any children it forked."""
    handle = log.open("w")
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM to the process group led by this PID, then SIGKILL if it has not exited after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        pass


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> float:
    """Seconds until ``url`` answers 200; fails with the log's tail if the process exits or time runs out."""
    start_time = time.monotonic()
    while time.monotonic() - start_time < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - start_time
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


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
