"""Seeded mini-batch index streams: shuffled epochs, drawn from a dedicated generator so runs repeat exactly."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def epoch_batches(num_items: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Yield ``steps`` index batches, reshuffling at every pass over the data."""
    if num_items <= 0:
        raise ValueError("cannot draw batches from an empty dataset")
    order = torch.randperm(num_items, generator=generator)
    cursor = 0
    for _ in range(steps):
        if cursor + batch_size > num_items:
            order = torch.randperm(num_items, generator=generator)
            cursor = 0
        yield order[cursor : cursor + min(batch_size, num_items)]
        cursor += batch_size
