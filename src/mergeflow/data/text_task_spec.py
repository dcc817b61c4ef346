"""What a text classification task is to mergeflow: its classes, where its sentences come from, how to build a split.

The text twin of ``task_spec.TaskSpec`` (whose splits are images). Generated sentences can repeat, so a split is
built by rejection: a sentence is kept only if it is new and if a hash of its normalised wording assigns it to this
split. The hash partition is fixed (it does not depend on the seed), so no sentence, up to case, spacing and
punctuation, can ever be in two splits of a task, whatever sizes and seeds a run asks for.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from mergeflow.data.task_spec import SPLITS, balanced_labels
from mergeflow.errors import MergeflowError
from mergeflow.seeding import numpy_rng

# make_split(split, n, seed) -> (texts, labels int64 (n,), sample ids); a paired task's texts are (first, second) pairs
TextSplitMaker = Callable[[str, int, int], tuple[list[str], np.ndarray, list[str]]]
PairSplitMaker = Callable[[str, int, int], tuple[list[tuple[str, str]], np.ndarray, list[str]]]

# Hash buckets out of 20 per split: 70 % / 10 % / 20 % of all sentences a task can generate.
SPLIT_BUCKETS: dict[str, range] = {"train": range(0, 14), "val": range(14, 16), "test": range(16, 20)}
DRAWS_PER_SENTENCE = 400
T = TypeVar("T")


@dataclass(frozen=True)
class TextTaskSpec:
    """A text task of an offline suite. ``origin`` and ``source`` say honestly where its sentences come from.

    ``paired`` tasks (GLUE's sentence-pair form) make (first, second) pairs, encoded with the tokenizer's pair encoding."""

    name: str
    class_names: tuple[str, ...]
    origin: Literal["real", "generated"]
    source: str
    make_split: TextSplitMaker | PairSplitMaker
    paired: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def normalised_wording(text: str) -> str:
    """Lower-case words only: two sentences that differ just in case, spacing or punctuation count as the same."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def split_of(text: str) -> str:
    """The split a sentence belongs to, from a hash of its normalised wording."""
    bucket = int.from_bytes(hashlib.sha256(normalised_wording(text).encode()).digest()[:4], "little") % 20
    return next(split for split, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


def distinct_balanced_split(task: str, split: str, n: int, seed: int, num_classes: int,
                            draw: Callable[[np.random.Generator, int], T], key: Callable[[T], str | None],
                            belongs: Callable[[T], bool], what: str = "sentences") -> tuple[list[T], np.ndarray, list[str]]:
    """A balanced split of distinct rows by rejection: ``draw(rng, label)`` writes one row of the class from the
    split's stream; a row is kept if its ``key`` (None = unusable) is new and it ``belongs`` to this split."""
    if split not in SPLITS:
        raise MergeflowError(f"{task}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if n < 0:
        raise MergeflowError(f"{task}/{split}: a split needs n >= 0 {what}, got {n}")
    rng = numpy_rng(seed, task, split)
    labels = balanced_labels(rng, n, num_classes)
    seen: set[str] = set()
    rows: list[T] = []
    for label in labels:
        for _ in range(DRAWS_PER_SENTENCE):
            row = draw(rng, int(label))
            row_key = key(row)
            if row_key is not None and row_key not in seen and belongs(row):
                break
        else:
            raise MergeflowError(f"{task}/{split}: the templates ran out of new {what} for class {int(label)} after "
                                 f"{len(rows)} of {n}; ask for a smaller split")
        seen.add(row_key)
        rows.append(row)
    return rows, labels, [f"generated:{task}:{split}:{i}" for i in range(n)]


def generated_text_split(task: str, split: str, n: int, seed: int, num_classes: int,
                         draw: Callable[[np.random.Generator, int], str]) -> tuple[list[str], np.ndarray, list[str]]:
    """A balanced split of distinct sentences: ``draw(rng, label)`` writes one sentence of the class from the split's stream."""
    return distinct_balanced_split(task, split, n, seed, num_classes, draw, normalised_wording,
                                   lambda text: split_of(text) == split)
