"""Text classification splits as Parquet: one sentence, its label and its provenance id per row.

The text twin of ``image_table.py``. Sentences are stored, not token ids: the table stays readable and
independent of any tokenizer; tokenising a split (``models.text_encoder.tokenize``) takes milliseconds. A pair task
(GLUE's sentence-pair form) has a second column ``text_pair`` with each row's second sentence.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mergeflow.atomic import atomic_path
from mergeflow.errors import MergeflowError

SCHEMA = pa.schema([("text", pa.string()), ("label", pa.int64()), ("sample_id", pa.string())])
PAIR_SCHEMA = pa.schema([("text", pa.string()), ("text_pair", pa.string()), ("label", pa.int64()), ("sample_id", pa.string())])
META_KEY = b"mergeflow"


@dataclass(frozen=True)
class TextSplit:
    """One split of one text task: ``texts`` (N sentences), ``labels`` (N,) int64, ``sample_ids`` provenance;
    ``pairs`` (N second sentences) for a pair task, None otherwise."""

    task: str
    split: str
    texts: list[str]
    labels: np.ndarray
    sample_ids: list[str]
    class_names: list[str]
    pairs: list[str] | None = None

    def __post_init__(self) -> None:
        if not all(isinstance(text, str) for text in self.texts + (self.pairs or [])):
            raise MergeflowError(f"{self.task}/{self.split}: every text must be a string")
        if self.pairs is not None and len(self.pairs) != len(self.texts):
            raise MergeflowError(f"{self.task}/{self.split}: {len(self.texts)} first sentences but {len(self.pairs)} second ones")
        if self.labels.ndim != 1 or not np.issubdtype(self.labels.dtype, np.integer):
            raise MergeflowError(f"{self.task}/{self.split}: labels must be a 1-D integer array, "
                                 f"got {self.labels.shape} {self.labels.dtype}")
        if not (len(self.texts) == len(self.labels) == len(self.sample_ids)):
            raise MergeflowError(f"{self.task}/{self.split}: texts, labels and sample_ids differ in length")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise MergeflowError(f"{self.task}/{self.split}: a label is outside 0..{len(self.class_names) - 1}")


def write_text_split(path: str | os.PathLike[str], split: TextSplit) -> None:
    """Write a split atomically; task, split and class names go into the Parquet schema metadata."""
    columns = {"text": pa.array(split.texts, type=pa.string())}
    if split.pairs is not None:
        columns["text_pair"] = pa.array(split.pairs, type=pa.string())
    columns["label"] = pa.array(split.labels.astype(np.int64), type=pa.int64())
    columns["sample_id"] = pa.array(split.sample_ids, type=pa.string())
    table = pa.table(columns, schema=SCHEMA if split.pairs is None else PAIR_SCHEMA)
    meta = {"kind": "text", "task": split.task, "split": split.split, "class_names": split.class_names}
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_text_split(path: str | os.PathLike[str]) -> TextSplit:
    """Read a split written by :func:`write_text_split`, with a clear error for a missing, corrupt or foreign file."""
    if not os.path.exists(path):
        raise MergeflowError(f"{path}: no such split; run the `prepare` stage first (dvc repro)")
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[META_KEY])
    except Exception as exc:  # pyarrow raises several types for corrupt files; a missing key is a KeyError
        raise MergeflowError(f"{path}: not a readable mergeflow text table ({exc!r}); delete it and rerun `prepare`") from exc
    schema = table.schema.remove_metadata()
    if meta.get("kind") != "text" or not (schema.equals(SCHEMA) or schema.equals(PAIR_SCHEMA)):
        raise MergeflowError(f"{path}: not a mergeflow text table (columns {table.schema.names}, kind {meta.get('kind')!r}); "
                             "delete it and rerun `prepare`")
    return TextSplit(
        task=meta["task"],
        split=meta["split"],
        texts=table.column("text").to_pylist(),
        labels=table.column("label").to_numpy().astype(np.int64),
        sample_ids=table.column("sample_id").to_pylist(),
        class_names=list(meta["class_names"]),
        pairs=table.column("text_pair").to_pylist() if "text_pair" in schema.names else None,
    )
