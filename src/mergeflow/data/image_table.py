"""Image classification splits as Parquet: raw uint8 HWC pixels, labels and provenance ids per row."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mergeflow.atomic import atomic_path
from mergeflow.errors import MergeflowError


@dataclass(frozen=True)
class ImageSplit:
    """One split of one task: ``images`` is (N, H, W, 3) uint8, ``labels`` (N,) int64, ``sample_ids`` provenance."""

    task: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    sample_ids: list[str]
    class_names: list[str]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise MergeflowError(f"{self.task}/{self.split}: images must be (N, H, W, 3) uint8, got {self.images.shape} {self.images.dtype}")
        if not (len(self.images) == len(self.labels) == len(self.sample_ids)):
            raise MergeflowError(f"{self.task}/{self.split}: images, labels and sample_ids differ in length")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise MergeflowError(f"{self.task}/{self.split}: a label is outside 0..{len(self.class_names) - 1}")


def write_split(path: str | os.PathLike[str], split: ImageSplit) -> None:
    """Write a split atomically; shape and class names go into the Parquet schema metadata."""
    n, h, w, c = split.images.shape
    table = pa.table(
        {
            "image": pa.array([row.tobytes() for row in split.images], type=pa.binary(h * w * c)),
            "label": pa.array(split.labels.astype(np.int64)),
            "sample_id": pa.array(split.sample_ids, type=pa.string()),
        }
    )
    meta = {"task": split.task, "split": split.split, "height": h, "width": w, "channels": c, "class_names": split.class_names}
    table = table.replace_schema_metadata({b"mergeflow": json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_split(path: str | os.PathLike[str]) -> ImageSplit:
    """Read a split written by :func:`write_split`, with a clear error for a missing or corrupt file."""
    if not os.path.exists(path):
        raise MergeflowError(f"{path}: no such split; run the `prepare` stage first (dvc repro)")
    try:
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"mergeflow"])
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise MergeflowError(f"{path}: not a readable mergeflow image table ({exc}); delete it and rerun `prepare`") from exc
    h, w, c = meta["height"], meta["width"], meta["channels"]
    flat = table.column("image").combine_chunks()
    raw = np.frombuffer(flat.buffers()[1], dtype=np.uint8, count=len(flat) * h * w * c, offset=flat.offset * h * w * c)
    return ImageSplit(
        task=meta["task"],
        split=meta["split"],
        images=raw.reshape(len(flat), h, w, c).copy(),
        labels=table.column("label").to_numpy().astype(np.int64),
        sample_ids=table.column("sample_id").to_pylist(),
        class_names=list(meta["class_names"]),
    )
