"""mergeflow.dvc_cli: DVC's command with its state files written atomically. The same dvc.lock as bare DVC writes; a
writer killed with SIGKILL in the middle of rewriting dvc.lock leaves the old file whole (bare DVC's in-place write
leaves it cut), and the next write removes the dead writer's temp."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}  # this checkout's library
DVC_YAML = "stages:\n  hello:\n    cmd: echo hello > out.txt\n    outs: [out.txt]\n"

# Rewrites dvc.lock through DVC's own writer with a dumper that dies by SIGKILL after writing half of the text.
KILLED_MID_WRITE = """
import os, signal, sys
from dvc.utils.serialize import _yaml
if sys.argv[1] == "atomic":
    from mergeflow.dvc_cli import install
    install()
real_dump = _yaml._dump
def dump_half_then_die(data, stream):
    import io
    text = io.StringIO()
    real_dump(data, text)
    stream.write(text.getvalue()[: len(text.getvalue()) // 2])
    stream.flush()
    os.kill(os.getpid(), signal.SIGKILL)
_yaml._dump = dump_half_then_die
_yaml.dump_yaml("dvc.lock", {"schema": "2.0", "stages": {"hello": {"cmd": "echo changed"}}})
"""


def _run(project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], cwd=project, env=ENV, capture_output=True, text=True, timeout=120)


def _project(folder: Path) -> Path:
    folder.mkdir()
    assert _run(folder, "-m", "dvc", "init", "--no-scm", "-q").returncode == 0
    (folder / "dvc.yaml").write_text(DVC_YAML)
    return folder


def test_the_same_lock_as_bare_dvc_and_no_temp_left(tmp_path: Path) -> None:
    bare, atomic = _project(tmp_path / "bare"), _project(tmp_path / "atomic")
    assert _run(bare, "-m", "dvc", "repro").returncode == 0
    done = _run(atomic, "-m", "mergeflow.dvc_cli", "repro")
    assert done.returncode == 0, done.stderr
    assert (atomic / "dvc.lock").read_text() == (bare / "dvc.lock").read_text()
    assert (atomic / "dvc.lock").stat().st_mode & 0o777 == (bare / "dvc.lock").stat().st_mode & 0o777
    table = atomic / ".dvc" / "tmp" / "rwlock"
    assert table.read_text() == (bare / ".dvc" / "tmp" / "rwlock").read_text() and yaml.safe_load(table.read_text())
    assert not list(atomic.glob(".*.tmp")) and not list((atomic / ".dvc" / "tmp").glob(".*.tmp"))


def test_a_writer_killed_mid_write_leaves_the_old_lock_whole(tmp_path: Path) -> None:
    bare, atomic = _project(tmp_path / "bare"), _project(tmp_path / "atomic")
    for project in (bare, atomic):
        assert _run(project, "-m", "mergeflow.dvc_cli", "repro").returncode == 0
    before = (atomic / "dvc.lock").read_text()

    assert _run(bare, "-c", KILLED_MID_WRITE, "bare").returncode == -9
    assert (bare / "dvc.lock").read_text() != before  # DVC's own in-place write: cut
    assert _run(atomic, "-c", KILLED_MID_WRITE, "atomic").returncode == -9
    assert (atomic / "dvc.lock").read_text() == before
    assert len(list(atomic.glob(".dvc.lock.*.tmp"))) == 1  # the dead writer's half

    (atomic / "out.txt").unlink()
    assert _run(atomic, "-m", "mergeflow.dvc_cli", "repro").returncode == 0
    assert (atomic / "dvc.lock").read_text() == before and not list(atomic.glob(".dvc.lock.*.tmp"))
