"""TALL masks (per-task masks over one multi-task vector) and Consensus merging (keep what >= k tasks share)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank
from mergeflow.merging.common import (
    StateDict,
    TaskVectors,
    check_non_negative,
    check_non_negative_int,
    check_number,
    compute_dtype,
    masked,
    merge_keys,
    scaled_sum,
)
from mergeflow.merging.ties import ties_merge


def _task_lambdas(task_vectors: TaskVectors, lam: float | Mapping[str, float]) -> dict[str, float]:
    """One lambda per task: TALL selects lambda per task on validation, so a mapping is accepted as well as a float."""
    if isinstance(lam, Mapping):
        missing = [name for name in task_vectors if name not in lam]
        if missing:
            raise MergeflowError(f"lam has no value for task(s) {', '.join(missing)}")
        return {name: check_non_negative(f"lam[{name!r}]", lam[name]) for name in task_vectors}
    value = check_non_negative("lam", lam)
    return dict.fromkeys(task_vectors, value)


def tall_masks(task_vectors: TaskVectors, merged: Mapping[str, torch.Tensor], lam: float | Mapping[str, float]) -> dict[str, StateDict]:
    """m_t = |tau_t| > lam_t * |merged - tau_t| (strict: a zero tau_t entry is never kept).

    Always the untrimmed tau_t, also when ``merged`` is a TIES vector, as tall_masks does.
    """
    keys = merge_keys(task_vectors)
    lambdas = _task_lambdas(task_vectors, lam)
    missing = [key for key in keys if key not in merged]
    if missing:
        raise MergeflowError(f"the merged vector lacks task-vector keys {missing[:5]}")
    masks: dict[str, StateDict] = {}
    for name, vector in task_vectors.items():
        masks[name] = {}
        for key in keys:
            tau = vector[key].detach().to(compute_dtype(vector[key].dtype))
            shared = merged[key].detach().to(tau.dtype)
            if shared.shape != tau.shape:
                raise MergeflowError(f"merged vector {key!r} has shape {tuple(shared.shape)}, task vectors have {tuple(tau.shape)}")
            masks[name][key] = tau.abs() > lambdas[name] * (shared - tau).abs()
    return masks


def _bank(task_vectors: TaskVectors, merged: StateDict, lam: float | Mapping[str, float]) -> MaskBank:
    masks = tall_masks(task_vectors, merged, lam)
    return MaskBank(merged=merged, masks=masks, rescalers=dict.fromkeys(masks, 1.0))


def tall_ta(task_vectors: TaskVectors, *, lam: float | Mapping[str, float] = 0.4) -> MaskBank:
    """TALL masks over tau_MTL = sum_t tau_t (plain sum, no coefficient); task t is theta_0 + m_t ⊙ tau_MTL.

    ``lam`` is a float or {task: lambda}; the authors pick it per task on validation from {0.2, ..., 0.6}.
    Default 0.4 (the middle of that grid) is our choice, not the authors'.
    """
    keys = merge_keys(task_vectors)
    return _bank(task_vectors, scaled_sum(task_vectors, keys, 1.0), lam)


def tall_ties(task_vectors: TaskVectors, *, lam: float | Mapping[str, float] = 0.4, k: float = 0.2, aggregate: str = "sum") -> MaskBank:
    """TALL masks over tau_MTL = TIES(tau, k, aggregate) at scale 1; tall_masks uses dis-sum at k = 20% (defaults)."""
    return _bank(task_vectors, ties_merge(task_vectors, k=k, aggregate=aggregate, scale=1.0), lam)


def consensus_mask(masks: Mapping[str, Mapping[str, torch.Tensor]], min_agreement: int = 2) -> StateDict:
    """Entries kept by at least ``min_agreement`` task masks (0 keeps everything, > T keeps nothing)."""
    min_agreement = check_non_negative_int("min_agreement", min_agreement)
    if not masks:
        raise MergeflowError("no task masks to take a consensus of")
    keys = list(next(iter(masks.values())))
    return {key: torch.stack([task[key] for task in masks.values()]).sum(dim=0) >= min_agreement for key in keys}


def consensus_merge(bank: MaskBank, *, min_agreement: int = 2, scale: float = 0.3) -> StateDict:
    """scale * (keep ⊙ tau_MTL), keep = consensus of the bank's TALL masks: one model for all tasks."""
    scale = check_number("scale", scale)
    keep = consensus_mask(bank.masks, min_agreement)
    return {
        key: (scale * masked(value.to(compute_dtype(value.dtype)), keep[key])).to(value.dtype)
        for key, value in bank.merged.items()
    }


def consensus_ta(
    task_vectors: TaskVectors, *, lam: float | Mapping[str, float] = 0.4, min_agreement: int = 2, scale: float = 0.3
) -> StateDict:
    """Consensus-TA: TALL masks over the TA sum, keep entries >= ``min_agreement`` tasks share (default 2, the
    authors' ``prun_thre_k``), times ``scale``. The authors search scale over {0.1, ..., 1.0} on validation;
    the default 0.3 (TA's usual coefficient) is our choice."""
    return consensus_merge(tall_ta(task_vectors, lam=lam), min_agreement=min_agreement, scale=scale)


def consensus_ties(
    task_vectors: TaskVectors,
    *,
    lam: float | Mapping[str, float] = 0.4,
    min_agreement: int = 2,
    scale: float = 0.3,
    k: float = 0.2,
    aggregate: str = "sum",
) -> StateDict:
    """Consensus-TIES: as ``consensus_ta`` over the TIES dis-sum vector (k = 20%) that tall_masks uses."""
    return consensus_merge(tall_ties(task_vectors, lam=lam, k=k, aggregate=aggregate), min_agreement=min_agreement, scale=scale)

