"""Parquet image tables round-trip exactly; a corrupt or missing file gives one readable error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mergeflow.data.image_table import ImageSplit, read_split, write_split
from mergeflow.errors import MergeflowError


def _split() -> ImageSplit:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    return ImageSplit("toy", "train", images, np.array([0, 1, 2, 0, 1]), [f"id{i}" for i in range(5)], ["a", "b", "c"])


def test_round_trip(tmp_path: Path) -> None:
    original = _split()
    write_split(tmp_path / "train.parquet", original)
    loaded = read_split(tmp_path / "train.parquet")
    assert np.array_equal(loaded.images, original.images)
    assert np.array_equal(loaded.labels, original.labels)
    assert loaded.sample_ids == original.sample_ids and loaded.class_names == original.class_names


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(MergeflowError, match="not a readable"):
        read_split(bad)
    with pytest.raises(MergeflowError, match="prepare"):
        read_split(tmp_path / "missing.parquet")


def test_labels_outside_the_classes_are_refused() -> None:
    good = _split()
    with pytest.raises(MergeflowError, match="outside"):
        ImageSplit("toy", "train", good.images, np.array([0, 1, 2, 3, 0]), good.sample_ids, good.class_names)
