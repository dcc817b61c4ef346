"""The atomic writer's temp names carry the writer's pid; a write sweeps dead writers' temps of its target and nothing
else, and removes the folders it created when it fails; SIGTERM inside ExitOnInterrupt runs that cleanup."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mergeflow.atomic import atomic_path, remove_stale_temps, temp_files, write_text_atomic
from mergeflow.errors import describe_os_error
from mergeflow.interrupts import ExitOnInterrupt


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_the_temp_name_carries_the_writers_pid(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".model.safetensors.{os.getpid()}.") and tmp.suffix == ".tmp"
        assert temp_files(target) == [(tmp, os.getpid())]
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x" and not temp_files(target)


def test_a_write_removes_dead_writers_temps_of_its_target_only(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    dead, live = _dead_pid(), os.getppid()
    stale = tmp_path / f".out.json.{dead}.abc_12.tmp"
    alive = tmp_path / f".out.json.{live}.xyz.tmp"
    other = tmp_path / f".out.json.5.{dead}.q.tmp"  # target "out.json.5"'s temp
    foreign = [tmp_path / ".out.json.abcd1234.tmp", tmp_path / f".out.json.{dead}.tmp"]  # not this module's naming
    for path in (stale, alive, other, *foreign):
        path.write_text("partial")
    assert remove_stale_temps(target) == [stale] and not stale.exists()
    stale.write_text("partial")
    write_text_atomic(target, "{}")
    assert not stale.exists() and alive.exists() and other.exists() and all(path.exists() for path in foreign)
    assert remove_stale_temps(tmp_path / "out.json.5") == [other]


def test_a_failed_write_removes_the_folders_it_created(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    target = tmp_path / "kept" / "new" / "dir" / "model.safetensors"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["kept"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"


def test_sigterm_cleans_up_and_sets_143(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    target = tmp_path / "new" / "out.bin"
    with ExitOnInterrupt("mergeflow:") as interrupt, atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes, at once
            pass
        raise AssertionError("SIGTERM did not interrupt the block")
    assert interrupt.exit_code == 143 and not (tmp_path / "new").exists()
    assert capsys.readouterr().err == "mergeflow: interrupted (SIGTERM); no partial file was left behind\n"
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_resource_limit_reads_as_what_to_do() -> None:
    assert describe_os_error(OSError(errno.EFBIG, os.strerror(errno.EFBIG))) == (
        "File too large (the process's file-size limit, ulimit -f, is below the output's size)")
    assert describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/x")) == "/x: Permission denied"
