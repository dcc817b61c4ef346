"""EMR-Merging: elect one unified vector, then per-task sign masks and rescalers recover each task's model."""

from __future__ import annotations

import torch

from mergeflow.merging.bank import MaskBank
from mergeflow.merging.common import StateDict, TaskVectors, masked, merge_keys, output_dtype, stack_key

EMPTY_TASK_RESCALER = 1.0


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
    keys = merge_keys(task_vectors)
    names = list(task_vectors)
    unified: StateDict = {}
    masks: dict[str, StateDict] = {name: {} for name in names}
    numerators = torch.zeros(len(names), dtype=torch.float64)
    denominators = torch.zeros(len(names), dtype=torch.float64)
    for key in keys:
        stack = stack_key(task_vectors, key)
        sign = torch.where(stack.sum(dim=0) > 0, 1.0, -1.0).to(stack.dtype)
        agrees = stack * sign > 0
        shared = sign * masked(stack.abs(), agrees).amax(dim=0)
        for index, name in enumerate(names):
            masks[name][key] = agrees[index].clone()
        if stack[0].numel():
            per_task = len(names), -1
            numerators += stack.abs().reshape(per_task).mean(dim=1).to(torch.float64)
            denominators += masked(shared.abs().expand_as(stack), agrees).reshape(per_task).mean(dim=1).to(torch.float64)
        unified[key] = shared.to(output_dtype(task_vectors, key))
    rescalers = {
        name: float(numerators[index] / denominators[index]) if denominators[index] > 0 else EMPTY_TASK_RESCALER
        for index, name in enumerate(names)
    }
    return MaskBank(merged=unified, masks=masks, rescalers=rescalers)
