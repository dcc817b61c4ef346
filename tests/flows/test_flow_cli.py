"""The command line: --help explains, bad input is one readable error, the plan adds the descendants of a change
(which `dvc status` does not show), and a run with nothing to do returns quickly without starting a flow run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flowkit import toy_project
from pipeline_kit import dvc, project_env, run

from flows.dvc_graph import PlanError, plan
from flows.workspace_lock import exclusive_workspace

CHAIN = """\
stages:
  a:
    cmd: python -c "open('a.txt', 'w').write(open('input.txt').read())"
    deps: [input.txt]
    outs: [a.txt]
  b:
    cmd: python -c "open('b.txt', 'w').write(open('a.txt').read() + 'b')"
    deps: [a.txt]
    outs: [b.txt]
  c:
    cmd: python -c "open('c.txt', 'w').write(open('b.txt').read() + 'c')"
    deps: [b.txt]
    outs: [c.txt]
  side:
    cmd: python -c "open('side.txt', 'w').write('side')"
    deps: [flaky.py]
    outs: [side.txt]
"""


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return run([sys.executable, "-m", "flows.pipeline", *args], cwd, env or project_env(cwd), check=False)


def test_help_explains_the_options(root: Path) -> None:
    for cmd in (["-m", "flows.pipeline"], ["flows/pipeline.py"]):
        proc = run([sys.executable, *cmd, "--help"], root, check=False)
        assert proc.returncode == 0, proc.stderr
        for option in ("--max-concurrent", "--retries", "--dask-address", "--exchange", "--keep-going",
                       "--threads-per-stage", "TARGET"):
            assert option in proc.stdout
        assert "dvc --wait-for-lock repro" in proc.stdout


def test_bad_input_is_one_readable_error(tmp_path: Path, root: Path) -> None:
    proc = _cli("--repo", str(tmp_path), cwd=root)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"python -m flows.pipeline: error: not a DVC repository (no .dvc/ in {tmp_path} "
                                   "or above it): run `dvc init` first")
    toy = toy_project(tmp_path / "toy")
    proc = _cli("--repo", str(toy), "no_such_stage", cwd=root)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("python -m flows.pipeline: error: Stage 'no_such_stage' not found inside "
                                   "'dvc.yaml' file")
    proc = _cli("--repo", str(toy), "-j", "0", cwd=root)
    assert proc.returncode == 2 and "--max-concurrent must be at least 1" in proc.stderr


def test_plan_adds_the_descendants_of_a_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    toy = toy_project(tmp_path / "chain", stages=CHAIN)
    cold = plan(toy)
    assert set(cold.order) == {"a", "b", "c", "side"}
    assert cold.order.index("a") < cold.order.index("b") < cold.order.index("c")
    assert cold.upstream == {"a": frozenset(), "b": {"a"}, "c": {"b"}, "side": frozenset()}
    dvc(toy, "repro")
    assert plan(toy).empty
    (toy / "input.txt").write_text("changed")
    after = plan(toy)
    assert after.changed == {"a"}  # what DVC reports: first-level invalidation only ...
    assert after.order == ("a", "b", "c")  # ... so the flow adds what reads it, in dependency order
    assert plan(toy, ["b"]).order == ("a", "b")  # like `dvc repro b`: only what b needs
    with pytest.raises(PlanError, match="not found"):
        plan(toy, ["nope"])

    # A no-op: DVC says nothing changed, the CLI answers without starting Prefect's flow machinery.
    dvc(toy, "repro")
    began = time.monotonic()
    proc = _cli("--repo", str(toy), cwd=root, env=project_env(toy, PREFECT_API_URL="http://127.0.0.1:9/api"))
    seconds = time.monotonic() - began
    assert proc.returncode == 0 and "nothing to run: every stage is up to date" in proc.stdout, proc.stderr
    print(f"no-op CLI run: {seconds:.1f} s")
    assert seconds < 20
    dry = _cli("--repo", str(toy), "--dry", cwd=root)
    assert dry.returncode == 0 and "(4 checked by DVC)" in dry.stdout
    (toy / "input.txt").write_text("changed again")
    dry = _cli("--repo", str(toy), "--dry", "c", cwd=root)
    assert dry.returncode == 0 and "3 of 3 stages would run" in dry.stdout, dry.stdout
    assert dry.stdout.splitlines()[1:] == ["  a  (changed; after: -)", "  b  (downstream of a change; after: a)",
                                           "  c  (downstream of a change; after: b)"]


def test_a_second_flow_in_one_workspace_refuses_with_one_line_or_waits(
        tmp_path: Path, root: Path, prefect_api: str) -> None:
    """Two flows in one workspace would run the same changed stage twice at once (DVC's lock is released while a
    stage runs): while one holds it, another refuses at once with one line, exit 2, having run nothing; with
    --wait-for-workspace it starts once the first has finished."""
    toy = toy_project(tmp_path / "busy", stages=CHAIN)
    with exclusive_workspace(toy):  # another flow's hold (this process's)
        proc = _cli("--repo", str(toy), cwd=root)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"python -m flows.pipeline: error: another pipeline flow is running in {toy.resolve()} (pid {os.getpid()}, "
            "started "), lines
        assert lines[0].endswith("wait for it to finish, or pass --wait-for-workspace to start when it has")
        waiting = subprocess.Popen([sys.executable, "-m", "flows.pipeline", "--repo", str(toy), "--wait-for-workspace"],
                                   cwd=root, env=project_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        time.sleep(5)
        assert waiting.poll() is None and not (toy / "a.txt").exists()  # queued behind the holder, nothing run
    _, stderr = waiting.communicate(timeout=180)
    assert waiting.returncode == 0, stderr[-3000:]
    assert (toy / "c.txt").read_text() == "inputbc"
