"""Global top-k-by-magnitude selection with the TIES / tall_masks semantics (ties and the off-by-one included)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mergeflow.merging.common import StateDict, check_fraction


def _magnitude_dtype(tensors: Sequence[torch.Tensor]) -> torch.dtype:
    return torch.float64 if any(tensor.dtype == torch.float64 for tensor in tensors) else torch.float32


def magnitude_threshold(tensors: Sequence[torch.Tensor], keep: float) -> torch.Tensor | None:
    """The |x| threshold that keeps a fraction ``keep`` of all entries of ``tensors`` taken together.

    As ``topk_values_mask`` does: with d entries, threshold = kthvalue(|x|, d - int(d * keep)), and every entry with
    |x| >= threshold is kept, i.e. int(d * keep) + 1 entries plus ties. ``keep == 1`` (no trim) returns None, the
    "keep everything" marker, because kthvalue(0) does not exist.
    """
    keep = check_fraction("k (keep fraction)", keep, allow_zero=False)
    dtype = _magnitude_dtype(tensors)
    flat = torch.cat([tensor.detach().reshape(-1).to(dtype).abs() for tensor in tensors])
    total = flat.numel()
    kept = int(total * keep)
    if total == 0 or kept >= total:
        return None
    return torch.kthvalue(flat, total - kept).values


def above_threshold(tensor: torch.Tensor, threshold: torch.Tensor | None) -> torch.Tensor:
    """|tensor| >= threshold as torch.bool, compared in the threshold's dtype (all True when there is no threshold)."""
    if threshold is None:
        return torch.ones(tensor.shape, dtype=torch.bool, device=tensor.device)
    return tensor.detach().to(threshold.dtype).abs() >= threshold


def topk_magnitude_mask(tensors: Mapping[str, torch.Tensor], keep: float) -> StateDict:
    """Boolean masks keeping the top ``keep`` fraction by magnitude over *all* of ``tensors`` (global, not per key)."""
    threshold = magnitude_threshold(list(tensors.values()), keep)
    return {key: above_threshold(value, threshold) for key, value in tensors.items()}
