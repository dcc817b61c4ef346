"""A stage lock table that a killed dvc left empty: bare DVC refuses every run; mergeflow.dvc_rwlock resets it (and
leaves a readable one alone), after which the run goes through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mergeflow.dvc_rwlock import RWLOCK

ROOT = Path(__file__).resolve().parents[1]


def _run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}  # this checkout's library
    return subprocess.run([sys.executable, "-m", *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120)


def test_an_empty_rwlock_stops_dvc_until_it_is_reset(tmp_path: Path) -> None:
    assert _run(tmp_path, "dvc", "init", "--no-scm", "-q").returncode == 0
    (tmp_path / "dvc.yaml").write_text("stages:\n  hello:\n    cmd: echo hello > out.txt\n    outs: [out.txt]\n")
    assert _run(tmp_path, "dvc", "repro").returncode == 0
    (tmp_path / "out.txt").unlink()
    (tmp_path / RWLOCK).write_text("")  # what a kill -9 between DVC's truncation and its write leaves

    refused = _run(tmp_path, "dvc", "repro")
    assert refused.returncode != 0 and "Unable to read RWLock-file" in refused.stderr, refused.stderr

    reset = _run(tmp_path, "mergeflow.dvc_rwlock")
    assert reset.returncode == 0 and reset.stderr.count("\n") == 1 and "half-written" in reset.stderr, reset.stderr
    assert _run(tmp_path, "dvc", "repro").returncode == 0 and (tmp_path / "out.txt").read_text() == "hello\n"

    table = (tmp_path / RWLOCK).read_bytes()
    again = _run(tmp_path, "mergeflow.dvc_rwlock")
    assert again.returncode == 0 and again.stderr == "" and (tmp_path / RWLOCK).read_bytes() == table
