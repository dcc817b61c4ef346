"""Threads per stage: with several stages at once the flow gives every stage the same share of this machine's cores
(fixed for the run, whatever runs beside it: torch's results depend on the thread count), one stage at a time keeps
the environment's setting, and --threads-per-stage fixes the number over the environment's OMP_NUM_THREADS."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
from flowkit import run_flow, toy_project
from pipeline_kit import project_env, run

from flows.pipeline import local_cores, stage_threads

pytestmark = pytest.mark.pipeline

WRITE_THREADS = "python -c \"import os; open('{name}.txt', 'w').write(os.environ.get('OMP_NUM_THREADS', 'unset'))\""
# Two independent stages, then one that needs both.
FORK_JOIN = f"""\
stages:
  left:
    cmd: {WRITE_THREADS.format(name='left')}
    deps: [input.txt]
    outs: [left.txt]
  right:
    cmd: {WRITE_THREADS.format(name='right')}
    deps: [input.txt]
    outs: [right.txt]
  join:
    cmd: {WRITE_THREADS.format(name='join')}
    deps: [left.txt, right.txt]
    outs: [join.txt]
"""


def _threads_seen(project: Path) -> dict[str, str]:
    return {name: (project / f"{name}.txt").read_text() for name in ("left", "right", "join")}


def test_an_even_share_of_the_cores_and_at_least_one() -> None:
    assert [stage_threads(2, n) for n in (1, 2, 3)] == [2, 1, 1]
    assert [stage_threads(16, n) for n in (1, 2, 3, 4)] == [16, 8, 5, 4]
    assert stage_threads(1, 0) == 1


def test_every_stage_gets_the_same_share_even_when_it_runs_alone(
    flows_pipeline: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # an explicit setting would win over the share
    share = max(1, local_cores() // 2)
    toy = toy_project(tmp_path / "fork-join", stages=FORK_JOIN)
    state, summary = run_flow(flows_pipeline, toy, max_concurrent=2)
    assert state.is_completed()
    assert _threads_seen(toy) == {"left": str(share), "right": str(share), "join": str(share)}  # join ran alone
    assert {row["stage"]: row["threads"] for row in summary["stages"]} == {"left": share, "right": share, "join": share}

    (toy / "input.txt").write_text("again, one stage at a time")
    state, summary = run_flow(flows_pipeline, toy, max_concurrent=1)
    assert state.is_completed()
    assert _threads_seen(toy) == {"left": "unset", "right": "unset", "join": "unset"}  # as under dvc repro
    assert {row["threads"] for row in summary["stages"]} == {0}


def test_threads_per_stage_fixes_every_stage(prefect_api: str, tmp_path: Path, root: Path) -> None:
    toy = toy_project(tmp_path / "fixed", stages=FORK_JOIN)
    env = project_env(toy, PREFECT_API_URL=prefect_api)  # OMP_NUM_THREADS=1 there: the option overrides it
    cli = [sys.executable, "-m", "flows.pipeline", "--repo", str(toy), "-j", "2"]
    proc = run([*cli, "--threads-per-stage", "0"], root, env, check=False)
    assert proc.returncode == 2 and "--threads-per-stage must be at least 1" in proc.stderr
    proc = run([*cli, "--threads-per-stage", "3"], root, env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _threads_seen(toy) == {"left": "3", "right": "3", "join": "3"}
