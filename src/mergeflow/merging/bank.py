"""Per-task reconstruction from one shared vector and per-task masks (TALL masks, EMR)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from mergeflow.errors import MergeflowError
from mergeflow.merging.common import StateDict, add_to_base, compute_dtype, masked


@dataclass(frozen=True)
class MaskBank:
    """What a mask method stores instead of T full models.

    ``merged`` is the shared vector (TALL: tau_MTL; EMR: tau_uni), ``masks[task][key]`` a torch.bool tensor per
    key, and ``rescalers[task]`` a scalar (EMR's lambda_t; 1.0 for TALL, whose reconstruction has no scaling).
    """

    merged: StateDict
    masks: dict[str, StateDict]
    rescalers: dict[str, float]

    @property
    def tasks(self) -> list[str]:
        return list(self.masks)


def task_delta(bank: MaskBank, task: str) -> StateDict:
    """rescaler_t * (m_t ⊙ merged): task t's reconstructed task vector."""
    if task not in bank.masks:
        raise MergeflowError(f"unknown task {task!r}; the mask bank holds {', '.join(bank.masks)}")
    mask, rescaler = bank.masks[task], bank.rescalers[task]
    return {key: task_key_delta(value, mask[key], rescaler) for key, value in bank.merged.items()}


def task_key_delta(merged: torch.Tensor, mask: torch.Tensor, rescaler: float) -> torch.Tensor:
    """One key of task t's reconstructed task vector, rescaler * (mask ⊙ merged), in merged's dtype."""
    return (rescaler * masked(merged.to(compute_dtype(merged.dtype)), mask)).to(merged.dtype)


def reconstruct(base: Mapping[str, torch.Tensor], bank: MaskBank, task: str) -> StateDict:
    """theta_0 + rescaler_t * (m_t ⊙ merged): the model evaluated on task t (task-known inference)."""
    return add_to_base(base, task_delta(bank, task))
