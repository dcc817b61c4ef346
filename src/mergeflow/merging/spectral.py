"""Shared machinery of the SVD methods (TSV-M, Iso-C, Iso-CTS, CART): the per-key loop and small linear algebra."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mergeflow.errors import MergeflowError
from mergeflow.merging.common import StateDict, TaskVectors, stack_tensors
from mergeflow.merging.plan import InMemoryVectors, MergePlan, as_delta, delta_kernel, run_plan
from mergeflow.merging.predicates import KeyPredicate
from mergeflow.runtime.device import CPU

# (stack of T task matrices, (T, m, n) with m >= n, in float32/64; transposed?) -> merged (m, n) matrix.
MatrixMerge = Callable[[torch.Tensor, bool], torch.Tensor]


def thin_svd(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch.linalg.svd(full_matrices=False), retried in float64 when LAPACK's gesdd fails to converge (it does on
    rank-deficient inputs with many repeated zero singular values, e.g. Iso-CTS residuals); results keep the
    input's dtype. Inputs that converge are untouched, so results do not change."""
    try:
        return torch.linalg.svd(matrix, full_matrices=False)
    except torch.linalg.LinAlgError:
        left, values, right = torch.linalg.svd(matrix.to(torch.float64), full_matrices=False)
        return left.to(matrix.dtype), values.to(matrix.dtype), right.to(matrix.dtype)


def polar_factor(matrix: torch.Tensor) -> torch.Tensor:
    """The orthogonal polar factor U V^T of a thin SVD: the nearest matrix with orthonormal columns (or rows)."""
    left, _, right = thin_svd(matrix)
    return left @ right


def spectral_key(
    key: str, tensors: Sequence[torch.Tensor], is_matrix: KeyPredicate, merge_matrix: MatrixMerge, non_matrix_scale: float,
    device: torch.device = CPU,
) -> torch.Tensor:
    """The per-key kernel of every SVD method: ``merge_matrix`` on matrix keys, non_matrix_scale * mean_t tau_t
    on the others.

    ``merge_matrix`` (the SVDs) runs on ``device``; the merged key comes back to the inputs' device and dtype.

    Matrices are handed over in the tall orientation (wide ones transposed; ``transposed`` says so, for the
    one method whose rule is not transpose-symmetric) and transposed back. All-zero matrices (CLIP's untouched
    text tensors) are skipped: every SVD method maps them to zero anyway, and their SVD is wasted work.
    """
    stack = stack_tensors(tensors)
    if not is_matrix(key, tensors[0]):
        result = non_matrix_scale * stack.mean(dim=0)
    elif stack.ndim != 3:
        raise MergeflowError(f"the matrix predicate selected {key!r}, which has shape {tuple(stack.shape[1:])}, not 2-D")
    elif not stack.any():
        result = torch.zeros_like(stack[0])
    else:
        transposed = stack.shape[1] < stack.shape[2]
        stack = stack.to(device)
        try:
            result = merge_matrix(stack.mT if transposed else stack, transposed)
        except MergeflowError as exc:  # a rule the checkpoints decide (a rank rounding to zero): say which key
            raise MergeflowError(f"key {key!r}: {exc}") from None
        result = result.mT if transposed else result
    return result.contiguous().to(tensors[0].dtype).to(tensors[0].device)


def spectral_plan(is_matrix: KeyPredicate, merge_matrix: MatrixMerge, non_matrix_scale: float, device: torch.device = CPU) -> MergePlan:
    """An SVD method as a plan: no global pass, ``spectral_key`` per key (its SVDs on ``device``)."""
    return MergePlan(delta_kernel(lambda key, tensors: spectral_key(key, tensors, is_matrix, merge_matrix, non_matrix_scale, device)))


def merge_per_key(task_vectors: TaskVectors, is_matrix: KeyPredicate, merge_matrix: MatrixMerge, non_matrix_scale: float,
                  device: torch.device = CPU) -> StateDict:
    """Run ``spectral_key`` on every key of in-memory task vectors."""
    vectors = InMemoryVectors(task_vectors)
    return as_delta(run_plan(spectral_plan(is_matrix, merge_matrix, non_matrix_scale, device), vectors))
