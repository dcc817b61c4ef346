"""The ``dvc`` command, with DVC's own state files written atomically: ``python -m mergeflow.dvc_cli repro ...``.

Why: DVC rewrites ``dvc.lock`` (and ``dvc.yaml``, params files it edits) by opening the file with truncation and
dumping YAML into it as it serialises, and its stage lock table ``.dvc/tmp/rwlock`` the same way. A ``dvc repro``
killed outright (``kill -9``, the OOM killer, a job scheduler's group kill) during one of those writes leaves a cut
file: a ``dvc.lock`` that still parses as YAML but fails DVC's schema, or an empty lock table, and every later run in
the workspace stops until someone repairs it by hand. The pipeline chaos test (tests/flows/test_chaos.py) hit both
once stages had become short enough (warm stage processes) for its kills to land in DVC's own bookkeeping; rewriting
a 4,600-line ``dvc.lock`` takes DVC a good part of a second.

This module runs DVC's own command-line entry point after routing those writes through ``mergeflow.atomic``
(a temp file beside the target, named with the writer's pid, renamed into place when complete; a dead writer's temp
is removed by the next write). Nothing else about DVC changes. ``scripts/run_pipeline.sh`` and the Prefect flow call
DVC this way; a bare ``dvc`` keeps DVC's in-place writes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mergeflow.atomic import atomic_path


def _atomic_dump_data(path: Any, data: Any, dumper: Any, fs: Any = None, **dumper_args: Any) -> None:
    """DVC's ``_dump_data(path, data, dumper, fs, **dumper_args)``: the same text, written to a temp and renamed."""
    target = Path(os.fspath(path))
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask()
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as stream:
            dumper(data, stream, **dumper_args)
        os.chmod(tmp, mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_edit_rwlock(original: Any) -> Any:
    """DVC's ``_edit_rwlock(lock_dir, fs, hardlink)`` given a file system whose write of the table is atomic: the
    write still happens where DVC makes it, inside DVC's guard (``rwlock.lock``)."""

    def edit(lock_dir: str, fs: Any, hardlink: bool) -> Any:
        return original(lock_dir, _AtomicTableFs(fs, os.path.join(lock_dir, "rwlock")), hardlink)

    return edit


class _AtomicTableFs:
    """``fs`` as DVC's lock-table editor sees it: everything as ``fs`` does, except that opening the table for
    writing gives a file that lands on the table only when it is closed after a complete write."""

    def __init__(self, fs: Any, table: str) -> None:
        self._fs = fs
        self._table = os.path.abspath(table)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def open(self, path: str, mode: str = "r", **kwargs: Any) -> Any:
        if "w" in mode and os.path.abspath(path) == self._table:
            return _AtomicTextFile(Path(self._table))
        return self._fs.open(path, mode, **kwargs)


class _AtomicTextFile:
    """A text file written through ``mergeflow.atomic.atomic_path``: renamed onto its target when the ``with``
    block ends without an error, discarded otherwise."""

    def __init__(self, target: Path) -> None:
        self._write = atomic_path(target)
        self._stream = open(self._write.__enter__(), "w", encoding="utf-8")

    def write(self, text: str) -> int:
        return self._stream.write(text)

    def __enter__(self) -> _AtomicTextFile:
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> Any:
        self._stream.close()
        return self._write.__exit__(kind, error, trace)


def install() -> None:
    """Route DVC's serialised writes and its lock-table writes through temp files in this process."""
    import dvc.rwlock
    import dvc.utils.serialize._common
    import dvc.utils.serialize._json
    import dvc.utils.serialize._py
    import dvc.utils.serialize._toml
    import dvc.utils.serialize._yaml

    for module in (dvc.utils.serialize._common, dvc.utils.serialize._json, dvc.utils.serialize._py,
                   dvc.utils.serialize._toml, dvc.utils.serialize._yaml):
        module._dump_data = _atomic_dump_data  # DVC 3's module-level writer
    dvc.rwlock._edit_rwlock = _atomic_edit_rwlock(dvc.rwlock._edit_rwlock)


def main() -> None:
    install()
    from dvc.cli import main as dvc_main

    sys.exit(dvc_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
