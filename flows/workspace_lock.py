"""One pipeline flow per workspace at a time: a second one refuses with one line, or queues (``wait=True``).

Why: the flow runs each stage as its own ``dvc repro --single-item`` process, and DVC releases its repository lock
while a stage's command runs; two flows in one workspace would each find the same stage changed and write its outputs
at once. The lock is an ``flock`` on ``.dvc/tmp/mergeflow-flow.lock`` (ignored by git and DVC): the kernel releases
it when its holder dies, ``kill -9`` included, so a crashed flow never blocks the next one. The file names the
holder (pid, start time) for the refusal's message; it is never read to decide anything.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = Path(".dvc") / "tmp" / "mergeflow-flow.lock"
_HELD: dict[Path, int] = {}  # workspace -> nesting depth in this process (the CLI takes it, then the flow again)


class WorkspaceBusy(Exception):
    """Another flow holds this workspace."""


@contextmanager
def exclusive_workspace(root: Path, wait: bool = False) -> Iterator[None]:
    """Hold ``root``'s flow lock for the block; raise :class:`WorkspaceBusy` at once if another process holds it
    (``wait``: block until it is released). Re-entrant within one process."""
    root = root.resolve()
    if root in _HELD:
        _HELD[root] += 1
        try:
            yield
        finally:
            _HELD[root] -= 1
        return
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "its pid unknown"
            raise WorkspaceBusy(f"another pipeline flow is running in {root} ({holder}); wait for it to finish, or "
                                "pass --wait-for-workspace to start when it has") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        _HELD[root] = 1
        try:
            yield
        finally:
            del _HELD[root]
    finally:
        os.close(fd)  # closing the descriptor releases the flock

