"""Splits of sentence-pair tasks: the pair twin of ``text_task_spec.generated_text_split``.

A pair is new if its normalised wording (both sentences, in order) is; the split is decided by the hash of the
*first* sentence, so one first sentence never appears in two splits of a task, with any second sentence.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mergeflow.data.text_task_spec import distinct_balanced_split, normalised_wording, split_of

Pair = tuple[str, str]


def _pair_key(pair: Pair) -> str | None:
    """Both sentences' wording, in order; None when the two say the same words (not a pair worth labelling)."""
    first, second = normalised_wording(pair[0]), normalised_wording(pair[1])
    return None if first == second else f"{first} || {second}"


def generated_pair_split(task: str, split: str, n: int, seed: int, num_classes: int,
                         draw: Callable[[np.random.Generator, int], Pair]) -> tuple[list[Pair], np.ndarray, list[str]]:
    """A balanced split of distinct pairs: ``draw(rng, label)`` writes one pair of the class from the split's stream."""
    return distinct_balanced_split(task, split, n, seed, num_classes, draw, _pair_key,
                                   lambda pair: split_of(pair[0]) == split, what="pairs")
