"""TALL masks (per-task masks over one multi-task vector) and Consensus merging (keep what >= k tasks share)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import torch

from mergeflow.declarations.common import check_non_negative, check_non_negative_int, check_number
from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank
from mergeflow.merging.common import StateDict, TaskVectors, compute_dtype, masked, merge_keys, summed
from mergeflow.merging.plan import KeyResult, KeyVectors, MergePlan, as_bank, as_delta, delta_kernel, in_memory
from mergeflow.merging.ties import ties_plan


def _task_lambdas(names: Collection[str], lam: float | Mapping[str, float]) -> dict[str, float]:
    """One lambda per task: TALL selects lambda per task on validation, so a mapping is accepted as well as a float."""
    if isinstance(lam, Mapping):
        missing = [name for name in names if name not in lam]
        if missing:
            raise MergeflowError(f"lam has no value for task(s) {', '.join(missing)}")
        return {name: check_non_negative(f"lam[{name!r}]", lam[name]) for name in names}
    value = check_non_negative("lam", lam)
    return dict.fromkeys(names, value)


def tall_key_masks(key: str, tensors: Sequence[torch.Tensor], merged: torch.Tensor, lambdas: Sequence[float]) -> tuple[torch.Tensor, ...]:
    """The per-key kernel of TALL: m_t = |tau_t| > lam_t * |merged - tau_t| for every task at one key."""
    masks = []
    for tensor, lam in zip(tensors, lambdas, strict=True):
        tau = tensor.detach().to(compute_dtype(tensor.dtype))
        shared = merged.detach().to(tau.dtype)
        if shared.shape != tau.shape:
            raise MergeflowError(f"merged vector {key!r} has shape {tuple(shared.shape)}, task vectors have {tuple(tau.shape)}")
        masks.append(tau.abs() > lam * (shared - tau).abs())
    return tuple(masks)


def tall_masks(task_vectors: TaskVectors, merged: Mapping[str, torch.Tensor], lam: float | Mapping[str, float]) -> dict[str, StateDict]:
    """m_t = |tau_t| > lam_t * |merged - tau_t| (strict: a zero tau_t entry is never kept).

    Always the untrimmed tau_t, also when ``merged`` is a TIES vector, as tall_masks does.
    """
    keys = merge_keys(task_vectors)
    lambdas = _task_lambdas(task_vectors, lam)
    missing = [key for key in keys if key not in merged]
    if missing:
        raise MergeflowError(f"the merged vector lacks task-vector keys {missing[:5]}")
    lambda_list = [lambdas[name] for name in task_vectors]
    masks: dict[str, StateDict] = {name: {} for name in task_vectors}
    for key in keys:
        tensors = [vector[key] for vector in task_vectors.values()]
        for name, mask in zip(task_vectors, tall_key_masks(key, tensors, merged[key], lambda_list), strict=True):
            masks[name][key] = mask
    return masks


def _tall_plan(names: Sequence[str], merged_plan: MergePlan, lam: float | Mapping[str, float]) -> MergePlan:
    """TALL masks over the vector ``merged_plan`` computes, key by key; rescalers are 1 (no scaling)."""
    lambdas = _task_lambdas(names, lam)
    lambda_list = [lambdas[name] for name in names]

    def kernel(key: str, tensors: Sequence[torch.Tensor]) -> KeyResult:
        merged = merged_plan.kernel(key, tensors).merged
        return KeyResult(merged, tall_key_masks(key, tensors, merged, lambda_list))

    return MergePlan(kernel, rescalers=dict.fromkeys(names, 1.0), elementwise=merged_plan.elementwise)


def tall_ta_plan(vectors: KeyVectors, *, lam: float | Mapping[str, float] = 0.4) -> MergePlan:
    """TALL over tau_MTL = sum_t tau_t: no global pass."""
    return _tall_plan(vectors.names, MergePlan(delta_kernel(lambda key, tensors: summed(tensors, 1.0)), elementwise=True), lam)


def tall_ties_plan(
    vectors: KeyVectors, *, lam: float | Mapping[str, float] = 0.4, k: float = 0.2, aggregate: str = "sum"
) -> MergePlan:
    """TALL over the TIES vector at scale 1: TIES's global passes, then one per-key pass."""
    return _tall_plan(vectors.names, ties_plan(vectors, k=k, aggregate=aggregate, scale=1.0), lam)


def tall_ta(task_vectors: TaskVectors, *, lam: float | Mapping[str, float] = 0.4) -> MaskBank:
    """TALL masks over tau_MTL = sum_t tau_t (plain sum, no coefficient); task t is theta_0 + m_t ⊙ tau_MTL.

    ``lam`` is a float or {task: lambda}; the authors pick it per task on validation from {0.2, ..., 0.6}.
    Default 0.4 (the middle of that grid) is our choice, not the authors'.
    """
    return as_bank(in_memory(tall_ta_plan, task_vectors, lam=lam))


def tall_ties(task_vectors: TaskVectors, *, lam: float | Mapping[str, float] = 0.4, k: float = 0.2, aggregate: str = "sum") -> MaskBank:
    """TALL masks over tau_MTL = TIES(tau, k, aggregate) at scale 1; tall_masks uses dis-sum at k = 20% (defaults)."""
    return as_bank(in_memory(tall_ties_plan, task_vectors, lam=lam, k=k, aggregate=aggregate))


def agreement(masks: Sequence[torch.Tensor], min_agreement: int) -> torch.Tensor:
    """One key's consensus: entries kept by at least ``min_agreement`` of the task masks."""
    return torch.stack(list(masks)).sum(dim=0) >= min_agreement


def consensus_key(merged: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    """The per-key kernel of Consensus merging: scale * (merged where ``keep``), cast back to merged's dtype."""
    return (scale * masked(merged.to(compute_dtype(merged.dtype)), keep)).to(merged.dtype)


def consensus_mask(masks: Mapping[str, Mapping[str, torch.Tensor]], min_agreement: int = 2) -> StateDict:
    """Entries kept by at least ``min_agreement`` task masks (0 keeps everything, > T keeps nothing)."""
    min_agreement = check_non_negative_int("min_agreement", min_agreement)
    if not masks:
        raise MergeflowError("no task masks to take a consensus of")
    keys = list(next(iter(masks.values())))
    return {key: agreement([task[key] for task in masks.values()], min_agreement) for key in keys}


def consensus_merge(bank: MaskBank, *, min_agreement: int = 2, scale: float = 0.3) -> StateDict:
    """scale * (keep ⊙ tau_MTL), keep = consensus of the bank's TALL masks: one model for all tasks."""
    scale = check_number("scale", scale)
    keep = consensus_mask(bank.masks, min_agreement)
    return {key: consensus_key(value, keep[key], scale) for key, value in bank.merged.items()}


def consensus_ta_plan(
    vectors: KeyVectors, *, lam: float | Mapping[str, float] = 0.4, min_agreement: int = 2, scale: float = 0.3
) -> MergePlan:
    """Consensus-TA key by key: TALL-TA's kernel, then the consensus of its masks (no global pass)."""
    tall = tall_ta_plan(vectors, lam=lam)
    scale = check_number("scale", scale)
    min_agreement = check_non_negative_int("min_agreement", min_agreement)

    def compute(key: str, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        result = tall.kernel(key, tensors)
        return consensus_key(result.merged, agreement(result.masks or (), min_agreement), scale)

    return MergePlan(delta_kernel(compute), elementwise=True)


def consensus_ta(
    task_vectors: TaskVectors, *, lam: float | Mapping[str, float] = 0.4, min_agreement: int = 2, scale: float = 0.3
) -> StateDict:
    """Consensus-TA: TALL masks over the TA sum, keep entries >= ``min_agreement`` tasks share (default 2, the
    authors' ``prun_thre_k``), times ``scale``. The authors search scale over {0.1, ..., 1.0} on validation;
    the default 0.3 (TA's usual coefficient) is our choice."""
    return as_delta(in_memory(consensus_ta_plan, task_vectors, lam=lam, min_agreement=min_agreement, scale=scale))


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

