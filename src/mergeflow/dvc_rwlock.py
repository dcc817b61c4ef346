"""Reset DVC's stage lock table when a killed ``dvc`` left it half-written.

Why: DVC records which process reads or writes which output in ``.dvc/tmp/rwlock`` and rewrites that file in place
(open with truncation, then write). A ``dvc repro`` killed with ``kill -9`` between the two leaves it empty, and from
then on every ``dvc repro`` in the workspace stops with "Unable to read RWLock-file '.dvc/tmp/rwlock'. JSON structure
is corrupted" until someone deletes it (seen in the pipeline chaos test, once stages had become short enough for
kills to land in DVC's own bookkeeping). DVC edits the file only while it holds ``.dvc/tmp/rwlock.lock``; taken here
the same way, a file that does not parse can only have been left by a writer that died, and an empty table is what
DVC itself starts from. (The entries the dead writer cut off may have named a live ``dvc`` in the same workspace;
``scripts/run_pipeline.sh`` and the flow hold the workspace lock, so no run of theirs is live then.)

``scripts/run_pipeline.sh`` runs this (``python -m mergeflow.dvc_rwlock``) when the file is empty, and the flow calls
:func:`reset_if_half_written` before it plans. A bare ``dvc repro`` does neither.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mergeflow.atomic import write_text_atomic

RWLOCK = Path(".dvc") / "tmp" / "rwlock"


def reset_if_half_written(root: Path) -> bool:
    """Replace ``root``'s ``.dvc/tmp/rwlock`` by an empty table if it does not parse; whether it did."""
    path = root / RWLOCK
    if not path.exists():
        return False
    from dvc.lock import make_lock

    with make_lock(str(path.with_name("rwlock.lock")), tmp_dir=str(path.parent), hardlink_lock=False):
        try:
            json.loads(path.read_text(encoding="utf-8"))
            return False
        except (ValueError, UnicodeDecodeError):
            write_text_atomic(path, "{}")
            return True


def main() -> None:
    root = Path.cwd()
    if reset_if_half_written(root):
        print(f"mergeflow: {root / RWLOCK} was left half-written by a killed dvc process; reset it to an empty lock "
              "table", file=sys.stderr)


if __name__ == "__main__":
    main()
