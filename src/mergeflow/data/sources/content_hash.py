"""A content hash of a referenced dataset, for datasets too large to copy into the pipeline.

The choice: hash the **bytes of the files** the reference reads (SHA-256 over sorted relative paths, sizes and
contents), not the ``datasets`` fingerprint. A ``Dataset._fingerprint`` is a hash of the operations that produced
a dataset inside one cache, not of its rows: ``Dataset.from_dict`` draws a random one, ``load_from_disk`` reports
another than the one ``save_to_disk`` wrote (seen with datasets 5.2.0), and a folder edited in place keeps its
``state.json``. Bytes are slower (one read of the data) but equal exactly when the data are equal, wherever the
folder lives.

What is hashed, per kind:

- ``image_folder``: every file under the root (all splits).
- ``disk``: every file under the folder, except ``state.json`` files (they hold that fingerprint, redrawn by each
  ``save_to_disk``; the Arrow data and ``dataset_info.json`` with the features stay in).
- ``torchvision``: the class's own files under the root (``TORCHVISION_ROOTS[...].files``), not the whole root,
  which often holds several datasets.
- ``huggingface``: the Arrow cache files ``datasets`` prepared for the reference's splits (the local copy the stages
  read). A ``datasets`` version that writes its cache differently changes the hash: a needless rerun, never a stale one.

Hidden files and folders (``.cache/``, ``.DS_Store``, ``.gitattributes``) are skipped: tools rewrite them freely.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from mergeflow.data.sources.reference import DatasetRef
from mergeflow.data.sources.torchvision_roots import TORCHVISION_ROOTS
from mergeflow.errors import MergeflowError

HASH_VERSION = b"mergeflow-dataset-files-v1"
CHUNK = 1 << 20


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def hash_files(root: str | Path, patterns: Sequence[str] = ("**/*",), exclude_names: Iterable[str] = ()) -> str:
    """``sha256:<hex>`` of the visible files under ``root`` matching ``patterns`` (paths relative to ``root``).

    Moving or copying the folder keeps the hash; renaming, adding, removing or editing any matched file changes it.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise MergeflowError(f"cannot hash {base}: not a folder")
    excluded = set(exclude_names)
    files = sorted({p for pattern in patterns for p in base.glob(pattern)
                    if p.is_file() and _visible(p, base) and p.name not in excluded}, key=lambda p: p.relative_to(base).as_posix())
    if not files:
        raise MergeflowError(f"cannot hash {base}: no files match {list(patterns)}")
    digest = hashlib.sha256(HASH_VERSION)
    for path in files:
        _add_file(digest, path.relative_to(base).as_posix(), path)
    return "sha256:" + digest.hexdigest()


def _add_file(digest: hashlib._Hash, label: str, path: Path) -> None:
    """One file into the running digest: its label and size (framing), then its own SHA-256."""
    content = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            content.update(chunk)
    digest.update(f"\0{label}\0{path.stat().st_size}\0".encode())
    digest.update(content.digest())


def reference_content_hash(ref: DatasetRef, *, cache_dir: str | None = None) -> str:
    """The content hash of what ``ref`` reads (see the module docstring for what that is, per kind)."""
    if ref.kind == "image_folder":
        assert ref.path is not None
        return hash_files(ref.path)
    if ref.kind == "disk":
        assert ref.path is not None
        path = Path(ref.path).expanduser()
        if path.is_file():
            return hash_files(path.parent, (path.name,))
        return hash_files(path, exclude_names=("state.json",))
    if ref.kind == "torchvision":
        assert ref.path is not None and ref.dataset_class is not None
        return hash_files(ref.path, TORCHVISION_ROOTS[ref.dataset_class].files)
    return _hub_cache_hash(ref, cache_dir)


def _hub_cache_hash(ref: DatasetRef, cache_dir: str | None) -> str:
    from mergeflow.data.sources.hf_source import load_hf_split

    digest = hashlib.sha256(HASH_VERSION)
    for split in (ref.train_split, ref.validation_split, ref.test_split):
        if split is None:
            continue
        dataset = load_hf_split(ref, split, cache_dir)
        cache_files = [Path(entry["filename"]) for entry in dataset.cache_files]
        if not cache_files:
            raise MergeflowError(f"{ref.describe()}[{split}]: held in memory, no cache files to hash")
        for number, path in enumerate(cache_files):
            _add_file(digest, f"{split}/{number}", path)
    return "sha256:" + digest.hexdigest()
