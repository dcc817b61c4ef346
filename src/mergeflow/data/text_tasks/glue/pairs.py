"""Splits of sentence-pair tasks: the pair twin of ``text_task_spec.generated_text_split``.

A pair is new if its normalised wording (both sentences, in order) is; the split is decided by the hash of the
*first* sentence, so one first sentence never appears in two splits of a task, with any second sentence.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mergeflow.data.task_spec import SPLITS, balanced_labels
from mergeflow.data.text_task_spec import DRAWS_PER_SENTENCE, normalised_wording, split_of
from mergeflow.errors import MergeflowError
from mergeflow.seeding import numpy_rng

Pair = tuple[str, str]


def generated_pair_split(task: str, split: str, n: int, seed: int, num_classes: int,
                         draw: Callable[[np.random.Generator, int], Pair]) -> tuple[list[Pair], np.ndarray, list[str]]:
    """A balanced split of distinct pairs: ``draw(rng, label)`` writes one pair of the class from the split's stream."""
    if split not in SPLITS:
        raise MergeflowError(f"{task}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if n < 0:
        raise MergeflowError(f"{task}/{split}: a split needs n >= 0 pairs, got {n}")
    rng = numpy_rng(seed, task, split)
    labels = balanced_labels(rng, n, num_classes)
    seen: set[str] = set()
    pairs: list[Pair] = []
    for label in labels:
        for _ in range(DRAWS_PER_SENTENCE):
            first, second = draw(rng, int(label))
            key = normalised_wording(first) + " || " + normalised_wording(second)
            if key not in seen and split_of(first) == split and normalised_wording(first) != normalised_wording(second):
                break
        else:
            raise MergeflowError(f"{task}/{split}: the rules ran out of new pairs for class {int(label)} after "
                                 f"{len(pairs)} of {n}; ask for a smaller split")
        seen.add(key)
        pairs.append((first, second))
    return pairs, labels, [f"generated:{task}:{split}:{i}" for i in range(n)]
