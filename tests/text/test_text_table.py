"""Parquet text tables round-trip exactly; missing, corrupt or foreign files give one readable error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mergeflow.data.image_table import ImageSplit, write_split
from mergeflow.data.text_table import TextSplit, read_text_split, write_text_split
from mergeflow.errors import MergeflowError


def _split() -> TextSplit:
    texts = ["Great kettle, five stars.", "Le café était froid — never again!", "", "Who built it?"]
    return TextSplit("toy", "train", texts, np.array([1, 0, 0, 1]), [f"id{i}" for i in range(4)], ["negative", "positive"])


def test_round_trip(tmp_path: Path) -> None:
    original = _split()
    write_text_split(tmp_path / "train.parquet", original)
    loaded = read_text_split(tmp_path / "train.parquet")
    assert loaded.texts == original.texts and np.array_equal(loaded.labels, original.labels)
    assert loaded.labels.dtype == np.int64
    assert (loaded.task, loaded.split) == ("toy", "train")
    assert loaded.sample_ids == original.sample_ids and loaded.class_names == original.class_names
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_corrupt_missing_and_foreign_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(MergeflowError, match="not a readable"):
        read_text_split(bad)
    with pytest.raises(MergeflowError, match="prepare"):
        read_text_split(tmp_path / "missing.parquet")
    images = ImageSplit("toy", "train", np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1]), ["a", "b"], ["x", "y"])
    write_split(tmp_path / "images.parquet", images)
    with pytest.raises(MergeflowError, match="not a mergeflow text table"):
        read_text_split(tmp_path / "images.parquet")


def test_inconsistent_splits_are_refused() -> None:
    good = _split()
    with pytest.raises(MergeflowError, match="outside"):
        TextSplit("toy", "train", good.texts, np.array([0, 1, 2, 0]), good.sample_ids, good.class_names)
    with pytest.raises(MergeflowError, match="differ in length"):
        TextSplit("toy", "train", good.texts[:3], good.labels, good.sample_ids, good.class_names)
    with pytest.raises(MergeflowError, match="string"):
        TextSplit("toy", "train", [1, 2, 3, 4], good.labels, good.sample_ids, good.class_names)  # type: ignore[list-item]
