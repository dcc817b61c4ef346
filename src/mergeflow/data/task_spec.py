"""What a classification task is to mergeflow: its classes, its prompts, where its images come from, how to build a split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mergeflow.seeding import numpy_rng

# make_split(split, n, seed, image_size) -> (images uint8 (n, S, S, 3), labels int64 (n,), sample ids)
SplitMaker = Callable[[str, int, int, int], tuple[np.ndarray, np.ndarray, list[str]]]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TaskSpec:
    """A task of an offline suite. ``origin`` says honestly whether its pixels are real recordings or generated."""

    name: str
    class_names: tuple[str, ...]
    templates: tuple[str, ...]
    origin: Literal["real", "generated"]
    source: str
    make_split: SplitMaker

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """``n`` labels with every class equally often (up to one), in random order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def generated_split(task: str, split: str, n: int, seed: int, num_classes: int,
                    draw: Callable[[np.random.Generator, int], np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A balanced split of a procedural task: ``draw(rng, label)`` renders one image from the split's own stream."""
    rng = numpy_rng(seed, task, split)
    labels = balanced_labels(rng, n, num_classes)
    images = [draw(rng, int(label)) for label in labels]
    return np.stack(images), labels, [f"generated:{task}:{split}:{i}" for i in range(n)]
