"""Iso-C and Iso-CTS: merge in a shared (and task-specific) subspace and flatten the spectrum to its mean."""

from __future__ import annotations

import torch

from mergeflow.declarations.common import check_fraction, check_number
from mergeflow.merging.common import StateDict, TaskVectors
from mergeflow.merging.plan import KeyVectors, MergePlan, as_delta, in_memory
from mergeflow.merging.predicates import KeyPredicate, is_tsv_iso_matrix
from mergeflow.merging.spectral import polar_factor, spectral_plan, thin_svd
from mergeflow.merging.top_svd import top_svd
from mergeflow.runtime.device import CPU


def iso_c(task_vectors: TaskVectors, *, scale: float = 1.0, is_matrix: KeyPredicate = is_tsv_iso_matrix,
          device: torch.device = CPU) -> StateDict:
    """scale * Delta with Delta = mean(S) * U V^T for svd(sum_t tau_t) on matrix keys, mean_t tau_t elsewhere.

    mean(S) runs over all r singular values, near-zero ones included; for T = 1 this is deliberately not tau_1.
    Default scale 1.0 is our choice: the authors search {0.1, ..., 3.0} on validation with early stopping.
    The SVDs run on ``device``; the merged delta is on the task vectors' device.
    """
    return as_delta(in_memory(iso_c_plan, task_vectors, scale=scale, is_matrix=is_matrix, device=device))


def iso_c_plan(vectors: KeyVectors, *, scale: float = 1.0, is_matrix: KeyPredicate = is_tsv_iso_matrix,
               device: torch.device = CPU) -> MergePlan:
    """Iso-C key by key (no global pass); see :func:`iso_c`."""
    scale = check_number("scale", scale)

    def merge_matrix(stack: torch.Tensor, transposed: bool) -> torch.Tensor:
        left, values, right = thin_svd(stack.sum(dim=0))
        return scale * (values.mean() * (left @ right))  # scale last: see merging.scaled

    return spectral_plan(is_matrix, merge_matrix, scale, device)


def iso_cts_subspace_sizes(rank: int, num_tasks: int, common: float) -> tuple[int, int]:
    """(common components c, components per task) as the authors size them, with Python's half-to-even round.

    c0 = int(r*f); per = round((r - c0)/T); c = r - T*per. We cap per at r // T so c never goes negative (the
    official code would fail there; it cannot happen for f >= 0.5 and T >= 1).
    """
    per_task = min(round((rank - int(rank * common)) / num_tasks), rank // num_tasks)
    return rank - num_tasks * per_task, per_task


def iso_cts(
    task_vectors: TaskVectors, *, scale: float = 1.0, common: float = 0.8, is_matrix: KeyPredicate = is_tsv_iso_matrix,
    device: torch.device = CPU,
) -> StateDict:
    """scale * Delta for Iso-CTS (``common`` = common_space_fraction, default 0.8 as the authors' config).

    Per matrix key: the top c directions of svd(sum_t tau_t) form the common subspace; each task's residual
    tau_t - U_c U_c^T tau_t (projected out on the *left* only, in the original orientation) gives its top
    ``per`` directions; the task-specific blocks then the common one are stacked, U and V are replaced by their
    polar factors, and every singular value is set to the mean of all kept ones. ``common = 1`` is Iso-C.
    Non-matrix keys get the mean of tau_t. Default scale 1.0 is our choice (the authors search {0.1, ..., 3.0}).
    The SVDs run on ``device``; the merged delta is on the task vectors' device.
    """
    return as_delta(in_memory(iso_cts_plan, task_vectors, scale=scale, common=common, is_matrix=is_matrix, device=device))


def iso_cts_plan(
    vectors: KeyVectors, *, scale: float = 1.0, common: float = 0.8, is_matrix: KeyPredicate = is_tsv_iso_matrix,
    device: torch.device = CPU,
) -> MergePlan:
    """Iso-CTS key by key (no global pass); see :func:`iso_cts`."""
    scale = check_number("scale", scale)
    common = check_fraction("common", common, allow_zero=True)
    num_tasks = len(vectors.names)

    def merge_matrix(stack: torch.Tensor, transposed: bool) -> torch.Tensor:
        orthogonal_left, orthogonal_right, flat_value, _, _ = iso_cts_blocks(stack, transposed, num_tasks, common)
        return scale * (flat_value * (orthogonal_left @ orthogonal_right))  # scale last: see merging.scaled

    return spectral_plan(is_matrix, merge_matrix, scale, device)


def iso_cts_blocks(
    stack: torch.Tensor, transposed: bool, num_tasks: int, common: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """Iso-CTS's blocks at one (T, m, n) key: (P_U (m, r), P_V (r, n), the flattened value, per-task count, common
    count), task-specific directions first in task order, then the common ones. Static Iso-CTS is
    value * P_U @ P_V; AdaRank-Iso-CTS (``adaptation.components``) splits the same blocks per task."""
    _, rows, cols = stack.shape
    num_common, per_task = iso_cts_subspace_sizes(cols, num_tasks, common)
    left, values, right = thin_svd(stack.sum(dim=0))
    left_parts, value_parts, right_parts = [], [], []
    if per_task:
        if transposed:  # the original left side is our right side
            basis = right[:num_common]
            residual = stack - (stack @ basis.mT) @ basis
        else:
            basis = left[:, :num_common]
            residual = stack - basis @ (basis.mT @ stack)
        task_left, task_values, task_right = top_svd(residual, per_task)  # each residual's top per_task, exactly
        used = num_tasks * per_task
        left_parts.append(task_left.permute(1, 0, 2).reshape(rows, used))
        value_parts.append(task_values.reshape(used))
        right_parts.append(task_right.reshape(used, cols))
    left_parts.append(left[:, :num_common])
    value_parts.append(values[:num_common])
    right_parts.append(right[:num_common])
    flat_value = torch.cat(value_parts).mean()
    orthogonal_left = polar_factor(torch.cat(left_parts, dim=1))
    orthogonal_right = polar_factor(torch.cat(right_parts, dim=0).mT).mT
    return orthogonal_left, orthogonal_right, flat_value, per_task, num_common
