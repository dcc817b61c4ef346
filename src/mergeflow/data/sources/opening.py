"""Reference -> lazy examples: the one entry point the stages use, whatever the kind.

``open_split`` opens one split by the dataset's own name; ``open_task_splits`` gives a task's train / validation /
test with the validation rule applied and the class names checked to agree across splits (an ImageFolder split that
lacks a class, or a hub config whose test split is labelled differently, would otherwise renumber labels silently).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mergeflow.data.sources.examples import SourceSplit
from mergeflow.data.sources.folder_source import open_folder_split
from mergeflow.data.sources.hf_source import open_datasets_split
from mergeflow.data.sources.real_task import RealTask
from mergeflow.data.sources.reference import DatasetRef, parse_reference
from mergeflow.data.sources.torchvision_source import open_torchvision_split
from mergeflow.data.sources.validation import split_validation
from mergeflow.errors import MergeflowError


def open_split(reference: DatasetRef | Mapping[str, Any], split: str, *, class_names: tuple[str, ...] | None = None,
               cache_dir: str | None = None) -> SourceSplit:
    """One split, named as the dataset names it; ``class_names`` is the task definition's fallback list.

    ``cache_dir`` is where ``datasets`` keeps its Arrow cache for hub ids and hub-layout folders (default: its own).
    """
    ref = parse_reference(reference)
    if ref.kind in ("huggingface", "disk"):
        return open_datasets_split(ref, split, class_names, cache_dir)
    if ref.kind == "image_folder":
        return open_folder_split(ref, split, class_names)
    return open_torchvision_split(ref, split, class_names)


@dataclass(frozen=True)
class TaskSplits:
    """A task's three splits; ``validation_origin`` says whether validation is the dataset's own or carved from train."""

    train: SourceSplit
    validation: SourceSplit
    test: SourceSplit
    validation_origin: str

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names


def open_task_splits(reference: DatasetRef | Mapping[str, Any], *, class_names: tuple[str, ...] | None = None,
                     cache_dir: str | None = None) -> TaskSplits:
    """Train, validation and test of a reference, by the papers' validation rule (``validation.split_validation``)."""
    ref = parse_reference(reference)
    full_train = open_split(ref, ref.train_split, class_names=class_names, cache_dir=cache_dir)
    test = open_split(ref, ref.test_split, class_names=class_names, cache_dir=cache_dir)
    rows = list(range(len(full_train)))
    if ref.validation_split is not None:
        own = open_split(ref, ref.validation_split, class_names=class_names, cache_dir=cache_dir)
        train_rows, _ = split_validation(rows, list(range(len(own))))
        train, validation, origin = full_train.select(train_rows), own, f"the dataset's {ref.validation_split!r} split"
    else:
        train_rows, validation_rows = split_validation(rows)
        train, validation = full_train.select(train_rows), full_train.select(validation_rows)
        origin = f"{len(validation_rows)} rows of {ref.train_split!r} (10 %, at most 5,000, seed 0)"
    for split in (validation, test):
        if split.class_names != train.class_names:
            raise MergeflowError(f"{ref.describe()}: {split.name} and {train.name} list different classes"
                                 f" ({_first_difference(split.class_names, train.class_names)}); every split must share one class list")
    return TaskSplits(train=train, validation=validation, test=test, validation_origin=origin)


def open_task(task: RealTask, *, cache_dir: str | None = None) -> TaskSplits:
    """A real task's three splits, its class names checked against the published count."""
    splits = open_task_splits(task.reference, class_names=task.class_names, cache_dir=cache_dir)
    task.check_class_names(splits.class_names)
    return splits


def _first_difference(a: tuple[str, ...], b: tuple[str, ...]) -> str:
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} classes"
    i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
    return f"class {i}: {a[i]!r} vs {b[i]!r}"
