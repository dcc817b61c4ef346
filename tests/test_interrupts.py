"""Merges and a stage killed at seeded random points (SIGKILL, SIGTERM, SIGINT) leave nothing behind and rerun to the
same bytes.

After every kill: the target is absent or complete (byte-equal to an uninterrupted run's), SIGTERM/SIGINT left no
temp file, no folder the write created, and printed one line (exit 143/130); a SIGKILLed writer's temp (it runs no
cleanup) is gone as soon as the next write to the same target has started. Each chain of kills ends with an
uninterrupted rerun that must produce the reference bytes. Most kills go through ``tests/fork_runner.py`` (one
import of torch, one fork per command), a few through fresh ``python -m`` processes; kills land during the write
(after the writer's temp file appears, a delay drawn up to the shortest measured write time) or, for some SIGKILLs, anywhere
in the process's life. SIGTERM/SIGINT are sent once the command runs (the fork runner starts it at once; fresh
processes are signalled once their temp file exists), since a signal during the interpreter's own imports, before
any mergeflow code runs, has nothing to clean up and Python's defaults answer it. A SIGTERM/SIGINT that lands
after the command's work (while it prints its status or the interpreter tears down) is ignored, so the command exits
0 with its complete output: such a kill counts as not landed.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from pipeline_kit import STAGE_ENV
from safetensors.torch import save_file

from mergeflow.profiles import write_profile

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, **STAGE_ENV, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), str(ROOT / "tests")]))
TEMP = re.compile(r"\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp")
EXIT = {signal.SIGKILL: -9, signal.SIGTERM: 143, signal.SIGINT: 130}
TASK = "handwritten_digits"
SPLITS = ("train", "val", "test")
KILLS: Counter[str] = Counter()  # signal name -> kills that landed before the command finished (checked at the end)


class ForkRunner:
    """Client of tests/fork_runner.py: start a command in a forked child, signal it, collect its exit status."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fork_runner.py")], cwd=ROOT, env=ENV,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def start(self, cwd: Path, module: str, argv: list[str], log: Path) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps([str(cwd), module, argv, str(log)]) + "\n")
        self.proc.stdin.flush()
        return int(self._line())

    def finished(self) -> bool:
        """Whether the running child has exited and been reaped (its status line is waiting)."""
        return bool(select.select([self.proc.stdout], [], [], 0)[0])

    def wait(self) -> int:
        return int(self._line())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def runner() -> Iterator[ForkRunner]:
    forks = ForkRunner()
    yield forks
    forks.close()


@pytest.fixture(scope="module")
def experts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base and four experts of 24 float32 matrices of 1 M entries (96 MB each), so that writing a merge takes a
    few tenths of a second; one integer buffer is copied from the base."""
    folder = tmp_path_factory.mktemp("experts")
    generator = torch.Generator().manual_seed(18)
    base = {f"blocks.{i}.weight": torch.randn(512, 2048, generator=generator) for i in range(24)}
    base["steps"] = torch.tensor([3])
    paths = {"base": folder / "base.safetensors"}
    save_file(base, paths["base"])
    for task in range(4):
        expert = {key: value + 0.01 * torch.randn(value.shape, generator=generator) if value.is_floating_point() else value
                  for key, value in base.items()}
        paths[f"t{task}"] = folder / f"t{task}.safetensors"
        save_file(expert, paths[f"t{task}"])
    return paths


def _merge_argv(experts: dict[str, Path], out: Path) -> list[str]:
    named = [item for name, path in experts.items() if name != "base" for item in ("--expert", f"{name}={path}")]
    return ["merge", "--method", "task_arithmetic", "--base", str(experts["base"]), *named, "--out", str(out)]


def _temps(folder: Path) -> dict[Path, int]:
    """Every temp file under ``folder`` (the atomic writer's naming) and its writer's pid."""
    found = {}
    for path in folder.rglob(".*.tmp") if folder.exists() else ():
        match = TEMP.fullmatch(path.name)
        assert match, f"a temp file not named by the atomic writer: {path}"
        found[path] = int(match[1])
    return found


def _one_line(log: Path, signum: signal.Signals, what: str) -> None:
    """One line on stderr; a stage interrupted while importing does not know its name yet (``tasks/__init__.py``)."""
    lines = log.read_text().splitlines()
    started = f"mergeflow: {what}interrupted ({signum.name}); no partial file was left behind"
    starting = f"mergeflow: {'stage ' if what else ''}interrupted ({signum.name}) while starting; no partial file was left behind"
    assert lines in ([started], [starting]), lines


def _after(pid: int, signum: signal.Signals, delay: float, seen: Callable[[], bool] | None, runner: ForkRunner) -> int:
    """Signal the runner's child ``delay`` s after ``seen()`` holds (or after the start); its exit status."""
    while seen is not None and not seen():
        if runner.finished():
            return runner.wait()
        time.sleep(0.001)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if runner.finished():
            return runner.wait()
        time.sleep(0.001)
    if not runner.finished():
        os.kill(pid, signum)
    return runner.wait()


def _check_kill(code: int, signum: signal.Signals, log: Path, what: str) -> bool:
    """The exit status and message of one killed command; whether the kill landed before it finished."""
    if code == 0:
        return False
    assert code == EXIT[signum], (code, log.read_text()[-2000:])
    if signum != signal.SIGKILL:
        _one_line(log, signum, what)
    KILLS[signum.name] += 1
    return True


def _signals(rng: random.Random, each: int) -> list[signal.Signals]:
    order = [signum for signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT) for _ in range(each)]
    rng.shuffle(order)
    return order


def _timed(runner: ForkRunner, cwd: Path, module: str, argv: list[str], log: Path, seen: Callable[[], bool]) -> tuple[float, float]:
    """One uninterrupted run: (seconds from start to exit, seconds from ``seen()`` to exit)."""
    start = time.monotonic()
    runner.start(cwd, module, argv, log)
    while not seen() and not runner.finished():
        time.sleep(0.001)
    writing = time.monotonic()
    assert runner.wait() == 0, log.read_text()
    end = time.monotonic()
    return end - start, end - writing


def test_killed_merges_leave_nothing_behind_and_rerun_to_the_same_bytes(
        runner: ForkRunner, experts: dict[str, Path], tmp_path: Path) -> None:
    reference_out = tmp_path / "reference" / "model.safetensors"
    done = subprocess.run([sys.executable, "-m", "mergeflow.cli", *_merge_argv(experts, reference_out)], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    reference = reference_out.read_bytes()
    # the fastest of three uninterrupted runs bounds the delays: under a loaded machine (CI's parallel workers) one
    # timing run can be slow, and delays drawn up to it would land after most later runs had finished
    timings = []
    for attempt in range(3):
        timing = tmp_path / f"timing{attempt}" / "model.safetensors"
        timings.append(_timed(runner, tmp_path, "mergeflow.cli", _merge_argv(experts, timing),
                              tmp_path / f"timing{attempt}.log", lambda t=timing: bool(_temps(t.parent)) or t.exists()))
        assert timing.read_bytes() == reference  # a forked run writes what a fresh process writes
    total_s, write_s = min(total for total, _ in timings), min(write for _, write in timings)
    rng = random.Random(18)
    order = _signals(rng, 9)
    landed = 0
    for chain in range(9):
        root = tmp_path / f"chain{chain}"
        out = root / "new" / "dir" / "model.safetensors"  # folders the first write creates
        for step, signum in enumerate(order[3 * chain: 3 * chain + 3]):
            log = tmp_path / f"merge{chain}.{step}.log"
            existed = root.exists()
            stale = set(_temps(root))
            pid = runner.start(tmp_path, "mergeflow.cli", _merge_argv(experts, out), log)
            anywhere = signum == signal.SIGKILL and rng.random() < 0.5
            own_temp_seen = [False]

            def writing(pid: int = pid, folder: Path = out.parent, seen: list[bool] = own_temp_seen) -> bool:
                seen[0] = seen[0] or pid in _temps(folder).values()
                return seen[0]

            code = _after(pid, signum, rng.uniform(0, total_s if anywhere else write_s), None if anywhere else writing, runner)
            landed += _check_kill(code, signum, log, "")
            assert not out.exists() or out.read_bytes() == reference  # never a partial output
            left = _temps(root)
            if own_temp_seen[0] or code == 0:
                assert not stale & set(left), "the next write did not remove a dead writer's temp"
            if signum != signal.SIGKILL or code == 0:
                assert not left, f"temp files left behind: {left}"
                if not existed and not out.exists():
                    assert not root.exists(), "the folders the failed write created are still there"
            else:
                assert set(left.values()) <= {pid}, left  # only the killed writer's own temp
        log = tmp_path / f"merge{chain}.rerun.log"
        runner.start(tmp_path, "mergeflow.cli", _merge_argv(experts, out), log)
        assert runner.wait() == 0, log.read_text()
        assert out.read_bytes() == reference
        assert sorted(path.relative_to(root).as_posix() for path in root.rglob("*")) == ["new", "new/dir", "new/dir/model.safetensors"]
    # fresh interpreters (the installed entry point's path: python -m mergeflow.cli), one kill per signal, mid-write
    out = tmp_path / "fresh" / "model.safetensors"
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        proc = subprocess.Popen([sys.executable, "-m", "mergeflow.cli", *_merge_argv(experts, out)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while not _temps(out.parent) and proc.poll() is None:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, write_s))
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
        log = tmp_path / f"fresh.{signum.name}.log"
        log.write_text(stderr)
        landed += _check_kill(proc.returncode, signum, log, "")
        assert not out.exists() or out.read_bytes() == reference
        assert set(_temps(out.parent).values()) <= ({proc.pid} if signum == signal.SIGKILL else set())
    runner.start(tmp_path, "mergeflow.cli", _merge_argv(experts, out), tmp_path / "fresh.rerun.log")
    assert runner.wait() == 0 and out.read_bytes() == reference and not _temps(out.parent)
    print(f"merge kills that landed: {dict(KILLS)}")
    assert landed >= 20, f"only {landed} of 30 kills landed before the merge finished ({dict(KILLS)})"


def _stage_outputs(project: Path) -> dict[str, bytes]:
    folder = project / "artifacts" / "data" / TASK
    return {split: (folder / f"{split}.parquet").read_bytes() for split in SPLITS if (folder / f"{split}.parquet").exists()}


def test_killed_stage_leaves_nothing_behind_and_reruns_to_the_same_bytes(runner: ForkRunner, tmp_path: Path) -> None:
    """prepare@handwritten_digits on the smoke profile (three small Parquet splits, written in a few ms after ~1 s of
    drawing): killed anywhere in its run, or just after its first write began."""
    argv = [TASK, "--params", "params.yaml"]
    reference_project, project = tmp_path / "reference", tmp_path / "project"
    for folder in (reference_project, project):
        folder.mkdir()
        write_profile(ROOT / "profiles" / "smoke.yaml", folder / "params.yaml")
    done = subprocess.run([sys.executable, "-m", "tasks.prepare", *argv], cwd=reference_project, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    reference = _stage_outputs(reference_project)
    assert sorted(reference) == sorted(SPLITS)
    total_s, _ = _timed(runner, reference_project, "tasks.prepare", argv, tmp_path / "timing.log", lambda: False)
    assert _stage_outputs(reference_project) == reference
    rng = random.Random(180)
    landed = 0
    for chain, signals in enumerate((_signals(rng, 1), _signals(rng, 1))):
        for step, signum in enumerate(signals):
            artifacts = project / "artifacts"
            existed = artifacts.exists()
            stale = set(_temps(project).values())  # pids of SIGKILLed writers whose targets were not written since
            log = tmp_path / f"stage{chain}.{step}.log"
            start = time.monotonic()
            pid = runner.start(project, "tasks.prepare", argv, log)
            if rng.random() < 0.5:  # anywhere in its run (mostly while it draws the images)
                code = _after(pid, signum, rng.uniform(0.02, total_s), None, runner)
            else:  # while it writes: the splits' folder exists once the first write started
                code = _after(pid, signum, rng.uniform(0, 0.02), (project / "artifacts" / "data" / TASK).exists, runner)
            landed += _check_kill(code, signum, log, f"stage prepare@{TASK} ")
            outputs = _stage_outputs(project)
            assert all(outputs[split] == reference[split] for split in outputs)  # finished splits are whole
            left = set(_temps(project).values())
            if signum == signal.SIGKILL and code != 0:
                assert left <= stale | {pid}, left
            else:
                assert left <= stale, f"temp files left behind: {left}"
                if not existed and not outputs:
                    assert not artifacts.exists(), "the folders the failed write created are still there"
            assert time.monotonic() - start < 60
        runner.start(project, "tasks.prepare", argv, tmp_path / f"stage{chain}.rerun.log")
        assert runner.wait() == 0
        assert _stage_outputs(project) == reference and not _temps(project)
        assert sorted(p.name for p in (project / "artifacts" / "data" / TASK).iterdir()) == [f"{s}.parquet" for s in sorted(SPLITS)]
    print(f"kills that landed, merges and stage: {dict(KILLS)}")
    assert landed >= 4, f"only {landed} of 6 stage kills landed before the stage finished"
