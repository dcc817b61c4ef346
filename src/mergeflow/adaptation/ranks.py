"""Learned rank vs intrinsic rank (AdaRank Fig. 4b): how many components a task keeps per layer after adaptation,
next to how many carry 95 % of its spectral energy."""

from __future__ import annotations

import torch

from mergeflow.errors import MergeflowError


def energy_rank(values: torch.Tensor, energy: float = 0.95) -> torch.Tensor:
    """(T,) smallest k with sum(s[:k]^2) >= energy * sum(s^2) per row of (T, r) descending values (0 for a zero row)."""
    if not 0 < energy <= 1:
        raise MergeflowError(f"energy must be in (0, 1], got {energy!r}")
    squared = values.detach().to(torch.float64).pow(2)
    total = squared.sum(dim=1, keepdim=True)
    cumulative = squared.cumsum(dim=1)
    reached = cumulative >= energy * total - 1e-12 * total
    ranks = reached.to(torch.int64).argmax(dim=1) + 1
    return torch.where(total.squeeze(1) > 0, ranks, torch.zeros_like(ranks))
