"""Write-to-temp-then-rename, so a crash, an error or an interrupt never leaves a half-written artifact behind.

The temp file sits beside the target as ``.<target name>.<writer pid>.<random>.tmp``. A writer killed outright
(SIGKILL, the OOM killer, a power cut) runs no cleanup, so every write first removes the temps of the same target
whose writer process is gone; a live writer's temp is left alone. Folders a write had to create are removed again
when it fails or is interrupted, so a failed ``--out new/dir/model.safetensors`` leaves no empty ``new/dir``.
SIGTERM and SIGINT reach the cleanup below as an exception (``mergeflow.interrupts``).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

# what follows ".<target name>." in a temp's name: the writer's pid, mkstemp's random letters (never a dot), ".tmp"
_TEMP_TAIL = re.compile(r"(\d+)\.[A-Za-z0-9_]+\.tmp")


def _writer_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (another user's process counts: it may be writing); pid 0 is nobody's."""
    if pid <= 0:
        return True  # not a name this module writes: leave it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_files(target: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """The temp files of ``target`` in its folder (this module's naming), each with its writer's pid."""
    target = Path(target)
    prefix = f".{target.name}."
    try:
        names = os.listdir(target.parent)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in sorted(names):
        match = _TEMP_TAIL.fullmatch(name[len(prefix):]) if name.startswith(prefix) else None
        if match is not None:
            found.append((target.parent / name, int(match[1])))
    return found


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temps of ``target`` whose writer no longer runs (killed before its cleanup could); return them."""
    removed = []
    for path, pid in temp_files(target):
        if not _writer_alive(pid):
            with contextlib.suppress(FileNotFoundError):  # another writer's sweep got there first
                path.unlink()
            removed.append(path)
    return removed


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones this call created, deepest first."""
    missing = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_folders(created: list[Path]) -> None:
    """Undo :func:`_make_folders` as far as the folders are still empty (a concurrent writer may be using them)."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` only if the block succeeds. On any error
    or interrupt the temp file and the folders this write created are removed and ``target`` is left as it was."""
    target = Path(target)
    created = _make_folders(target.parent)
    try:
        remove_stale_temps(target)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)  # gone already after a successful rename
    except BaseException:
        _remove_folders(created)
        raise


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write a small text file (JSON, Markdown) atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
