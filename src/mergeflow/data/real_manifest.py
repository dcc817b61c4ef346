"""A real task's prepared split: a manifest (reference, content hash, chosen rows, class names), not a copy.

The choice: the papers' datasets are tens of GB of JPEGs (SUN397, Food101); copying them into ``artifacts/`` would
double the disk they take and DVC's cache a third time. So prepare@TASK writes, per split, a small Parquet table at
the path an offline suite's pixel table has (``artifacts/data/<task>/<split>.parquet``, so every stage's DVC deps are
unchanged): one row per example, its row in the source split, and in the schema metadata the reference, the content
hash of the data it reads (:mod:`mergeflow.data.sources.content_hash`), the class names and the task's templates.
The stages open the reference again and decode the rows they need (:mod:`mergeflow.data.real_images`). A changed
dataset changes the hash only when prepare runs again: data edited in place under an unchanged reference needs
``dvc repro -f -s prepare@TASK`` (DVC sees params and files it tracks, not a folder outside the project).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mergeflow.atomic import atomic_path
from mergeflow.errors import MergeflowError

MANIFEST_KEY = b"mergeflow_real"


@dataclass(frozen=True)
class SplitManifest:
    """One split of a real task: ``rows`` of the source split ``source_split`` of ``reference`` (a DatasetRef dict)."""

    task: str
    split: str
    reference: dict[str, Any]
    source_split: str
    rows: list[int]
    content_hash: str
    class_names: list[str]
    templates: list[str]
    validation_origin: str = ""
    cache_dir: str | None = None  # suite.cache_dir: where `datasets` keeps hub ids' Arrow files


def write_manifest(path: str | os.PathLike[str], manifest: SplitManifest) -> None:
    meta = {key: value for key, value in manifest.__dict__.items() if key != "rows"}
    table = pa.table({"row": pa.array(manifest.rows, type=pa.int64())})
    table = table.replace_schema_metadata({MANIFEST_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def is_manifest(path: str | os.PathLike[str]) -> bool:
    """Whether a prepared split is a real task's manifest (else an offline suite's table)."""
    if not os.path.exists(path):
        return False
    metadata = pq.read_schema(path).metadata or {}
    return MANIFEST_KEY in metadata


def read_manifest(path: str | os.PathLike[str]) -> SplitManifest:
    if not os.path.exists(path):
        raise MergeflowError(f"{path}: no such split; run the `prepare` stage first (dvc repro)")
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[MANIFEST_KEY])
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise MergeflowError(f"{path}: not a readable mergeflow split manifest ({exc}); delete it and rerun `prepare`") from exc
    return SplitManifest(rows=[int(r) for r in table.column("row").to_pylist()], **meta)
