"""EMR-Merging: elect one unified vector, then per-task sign masks and rescalers recover each task's model."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mergeflow.merging.bank import MaskBank
from mergeflow.merging.common import TaskVectors, stack_tensors
from mergeflow.merging.plan import KeyResult, KeyVectors, MergePlan, as_bank, column_chunks, in_memory

EMPTY_TASK_RESCALER = 1.0


def _elect(stack: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, tau_uni) at one key: A = |tau_t| where tau_t agrees with the elected sign, else 0 (so M_t = A_t > 0),
    and the unified vector, in the compute dtype. Float ops only: bool ops are the slow ones on CPU (see
    ``topk.trim_rows``); A's zeros and max are exactly those of masked(|stack|, M)."""
    sign = torch.sign(stack.sum(dim=0))
    sign.sub_(1 - sign.abs())  # +1 where the sum is > 0, else -1 (a zero sum gets -1)
    aligned = (stack * sign).clamp_(min=0)
    return aligned, sign * aligned.amax(dim=0)


def emr_rescalers(vectors: KeyVectors) -> dict[str, float]:
    """The global pass: lambda_t = sum_keys mean|tau_t| / sum_keys mean|M_t ⊙ tau_uni| (1.0 when that is 0)."""
    names = vectors.names
    numerators = torch.zeros(len(names), dtype=torch.float64)
    denominators = torch.zeros(len(names), dtype=torch.float64)
    for key in vectors.keys:
        tensors = vectors.tensors(key)
        numel = tensors[0].numel()
        if not numel:
            continue
        key_numerators = torch.zeros(len(names), dtype=torch.float64)
        key_denominators = torch.zeros(len(names), dtype=torch.float64)
        for _, chunk in column_chunks(tensors):  # cache-sized pieces; the per-key mean is sum / numel
            stack = stack_tensors(chunk)
            aligned, shared = _elect(stack)
            key_numerators += stack.abs().sum(dim=1, dtype=torch.float64)
            key_denominators += (torch.sign(aligned) * shared.abs()).sum(dim=1, dtype=torch.float64)
        numerators += key_numerators / numel
        denominators += key_denominators / numel
    return {
        name: float(numerators[index] / denominators[index]) if denominators[index] > 0 else EMPTY_TASK_RESCALER
        for index, name in enumerate(names)
    }


def emr_key(key: str, tensors: Sequence[torch.Tensor]) -> KeyResult:
    """The per-key kernel: tau_uni cast back to the task vectors' dtype, and one mask M_t per task."""
    aligned, shared = _elect(stack_tensors(tensors))
    return KeyResult(shared.to(tensors[0].dtype), tuple(aligned > 0))


def emr_plan(vectors: KeyVectors) -> MergePlan:
    """EMR as two passes: the rescalers' global sums first, then unified vector and masks key by key."""
    return MergePlan(emr_key, rescalers=emr_rescalers(vectors), elementwise=True)


def emr_merge(task_vectors: TaskVectors) -> MaskBank:
    """EMR's Elect, Mask, Rescale, element-wise over every key it is given (filter heads out before calling).

    - sigma = +1 where sum_t tau_t > 0, else -1 (a zero sum gets -1, as ``(sum > 0) * 2 - 1`` does).
    - M_t = (tau_t * sigma) > 0 (strict); tau_uni = sigma * max_t |M_t ⊙ tau_t|.
    - lambda_t = sum_keys mean|tau_t[key]| / sum_keys mean|M_t[key] ⊙ tau_uni[key]|: per-tensor means, so
      every tensor counts equally whatever its size. When the denominator is 0 (M_t ⊙ tau_uni is zero
      everywhere, e.g. an all-zero task vector) lambda_t = 1.0: task t's reconstruction is theta_0 whatever
      lambda_t is, and 1.0 keeps the T = 1 identity lambda_1 = 1 intact.
    Task t's model is theta_0 + lambda_t * (M_t ⊙ tau_uni): see ``reconstruct``.
    """
    return as_bank(in_memory(emr_plan, task_vectors))
