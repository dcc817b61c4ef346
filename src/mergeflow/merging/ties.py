"""TIES-Merging: trim each task vector to its top-k magnitudes, elect a sign per entry, merge the agreeing entries."""

from __future__ import annotations

import torch

from mergeflow.merging.common import (
    StateDict,
    TaskVectors,
    check_choice,
    check_fraction,
    check_number,
    masked,
    merge_keys,
    output_dtype,
    stack_key,
)
from mergeflow.merging.topk import above_threshold, magnitude_threshold

AGGREGATES = ("mean", "sum")


def _trim_thresholds(task_vectors: TaskVectors, keys: list[str], k: float) -> list[torch.Tensor | None]:
    """One |x| threshold per task, over that task's whole flattened vector (TIES trims globally, not per layer)."""
    return [magnitude_threshold([vector[key] for key in keys], k) for vector in task_vectors.values()]


def _trimmed(task_vectors: TaskVectors, key: str, thresholds: list[torch.Tensor | None]) -> torch.Tensor:
    """The (T, *shape) stack of trimmed task vectors at ``key``; recomputed per pass instead of holding T copies."""
    stack = stack_key(task_vectors, key)
    keep = torch.stack([above_threshold(vector[key], threshold) for vector, threshold in zip(task_vectors.values(), thresholds)])
    return masked(stack, keep)


def trim_masks(task_vectors: TaskVectors, k: float = 0.2) -> dict[str, StateDict]:
    """The per-task boolean masks of the trim step (for inspection and tests)."""
    keys = merge_keys(task_vectors)
    thresholds = _trim_thresholds(task_vectors, keys, k)
    return {
        name: {key: above_threshold(vector[key], threshold) for key in keys}
        for (name, vector), threshold in zip(task_vectors.items(), thresholds)
    }


def ties_merge(task_vectors: TaskVectors, *, k: float = 0.2, aggregate: str = "mean", scale: float = 1.0) -> StateDict:
    """scale * tau_TIES, the merged task vector (add it to theta_0 with ``add_to_base``).

    - Trim: per task keep |x| >= kthvalue(|x|, d - int(d*k)) over all keys together (ties kept, so
      int(d*k)+1 or more entries survive); ``k`` is a fraction in (0, 1], 1 meaning no trim.
    - Elect: gamma = sign(sum_t trimmed_t); a zero sum takes the majority sign sign(sum of all gammas)
      (the "mass" rule); if that is 0 too, gamma stays 0 and negative entries are selected, as the official
      ``torch.where(sign > 0, x > 0, x < 0)`` does.
    - Disjoint merge over strictly agreeing entries: ``aggregate="mean"`` (dis-mean, the original repo and
      tall_masks' ``method=ties``; default) or ``"sum"`` (dis-sum, the ViT copies in AdaMerging/EMR/DaWin and
      tall_masks' TALL/Consensus-TIES).
    Default ``scale=1.0`` is the paper's no-validation lambda; the codebases search it on validation.
    """
    keys = merge_keys(task_vectors)
    k = check_fraction("k (TIES keep fraction)", k, allow_zero=False)
    aggregate = check_choice("aggregate", aggregate, AGGREGATES)
    scale = check_number("scale", scale)
    thresholds = _trim_thresholds(task_vectors, keys, k)

    sign_votes = 0
    for key in keys:
        sign_votes += int(torch.sign(_trimmed(task_vectors, key, thresholds).sum(dim=0)).to(torch.int64).sum())
    majority_sign = float((sign_votes > 0) - (sign_votes < 0))

    merged: StateDict = {}
    for key in keys:
        trimmed = _trimmed(task_vectors, key, thresholds)
        elected = torch.sign(trimmed.sum(dim=0))
        elected = torch.where(elected == 0, torch.full_like(elected, majority_sign), elected)
        agrees = torch.where(elected > 0, trimmed > 0, trimmed < 0)
        total = masked(trimmed, agrees).sum(dim=0)
        if aggregate == "mean":
            total = total / agrees.sum(dim=0).clamp(min=1)
        merged[key] = (scale * total).to(output_dtype(task_vectors, key))
    return merged
