"""TIES-Merging: trim each task vector to its top-k magnitudes, elect a sign per entry, merge the agreeing entries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mergeflow.declarations.common import check_choice, check_fraction, check_number
from mergeflow.declarations.merging import AGGREGATES
from mergeflow.merging.common import StateDict, TaskVectors, stack_tensors
from mergeflow.merging.plan import InMemoryVectors, KeyVectors, MergePlan, as_delta, column_chunks, delta_kernel, in_memory
from mergeflow.merging.topk import above_threshold, trim_rows


@dataclass(frozen=True)
class TiesStatistics:
    """TIES's two global quantities: one |x| trim threshold per task (None = keep all) and the majority sign."""

    thresholds: list[torch.Tensor | None]
    majority_sign: float


def _trimmed(tensors: Sequence[torch.Tensor], thresholds: list[torch.Tensor | None]) -> torch.Tensor:
    """The (T, *shape) stack of trimmed task vectors at one key; recomputed per pass instead of holding T copies."""
    return trim_rows(stack_tensors(tensors), thresholds)


def ties_statistics(vectors: KeyVectors, k: float) -> TiesStatistics:
    """The global passes: per-task thresholds over the task's whole flattened vector (TIES trims globally, not
    per layer), then the sign votes of the trimmed sums over every key."""
    thresholds = vectors.magnitude_thresholds(k)
    sign_votes = 0
    for key in vectors.keys:
        for _, chunk in column_chunks(vectors.tensors(key)):
            sign_votes += int(torch.sign(_trimmed(chunk, thresholds).sum(dim=0)).to(torch.int64).sum())
    return TiesStatistics(thresholds, float((sign_votes > 0) - (sign_votes < 0)))


def ties_key(tensors: Sequence[torch.Tensor], statistics: TiesStatistics, aggregate: str, scale: float) -> torch.Tensor:
    """The per-key kernel: trim, elect (zero sums take the majority sign), disjoint merge, scale, cast back."""
    trimmed = _trimmed(tensors, statistics.thresholds)
    elected = torch.sign(trimmed.sum(dim=0))
    # A zero sum takes the majority sign; if that is 0 too the official where(sign > 0, x > 0, x < 0) selects
    # the negative entries, i.e. acts as sign -1. Float arithmetic on {-1, 0, 1} is exact (see trim_rows' why).
    elected.add_((1 - elected.abs()) * (statistics.majority_sign or -1.0))
    agreeing = trimmed.mul_(elected).clamp_(min=0)  # |x| where x has the elected sign, else 0
    total = agreeing.sum(dim=0).mul_(elected)  # = the sum of the agreeing signed entries, exactly
    if aggregate == "mean":
        total = total / torch.sign(agreeing).sum(dim=0).clamp(min=1)
    return (scale * total).to(tensors[0].dtype)


def trim_masks(task_vectors: TaskVectors, k: float = 0.2) -> dict[str, StateDict]:
    """The per-task boolean masks of the trim step (for inspection and tests)."""
    vectors = InMemoryVectors(task_vectors)
    thresholds = vectors.magnitude_thresholds(k)
    return {
        name: {key: above_threshold(vector[key], threshold) for key in vectors.keys}
        for (name, vector), threshold in zip(task_vectors.items(), thresholds, strict=True)
    }


def ties_plan(vectors: KeyVectors, *, k: float = 0.2, aggregate: str = "mean", scale: float = 1.0) -> MergePlan:
    """Check the hyperparameters, run the global passes, and return the per-key TIES kernel."""
    k = check_fraction("k (TIES keep fraction)", k, allow_zero=False)
    aggregate = check_choice("aggregate", aggregate, AGGREGATES)
    scale = check_number("scale", scale)
    statistics = ties_statistics(vectors, k)
    return MergePlan(delta_kernel(lambda key, tensors: ties_key(tensors, statistics, aggregate, scale)), elementwise=True)


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
    return as_delta(in_memory(ties_plan, task_vectors, k=k, aggregate=aggregate, scale=scale))
