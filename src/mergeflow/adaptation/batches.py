"""The unlabelled batches an adaptation step draws: ``batch_size`` inputs of each task's pool, seeded per task."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mergeflow.errors import MergeflowError
from mergeflow.seeding import torch_generator


def batch_sampler(pools: Sequence[torch.Tensor], batch_size: int, seed: int) -> Callable[[int, int], torch.Tensor]:
    """batches(step, task): ``batch_size`` inputs of the task's pool without replacement within a batch, from a
    per-task generator (a run is reproducible; the loop asks for tasks in order at every step)."""
    if batch_size < 1:
        raise MergeflowError(f"batch_size must be at least 1, got {batch_size}")
    empty = [index for index, pool in enumerate(pools) if len(pool) == 0]
    if empty:
        raise MergeflowError(f"the unlabelled pools of tasks {empty} are empty: every task needs inputs to adapt on")
    generators = [torch_generator(seed, "adapt-batches", index) for index in range(len(pools))]

    def batches(step: int, task: int) -> torch.Tensor:
        pool = pools[task]
        return pool[torch.randperm(len(pool), generator=generators[task])[:batch_size]]

    return batches
