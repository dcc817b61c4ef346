"""Shared machinery of the SVD methods (TSV-M, Iso-C, Iso-CTS, CART): the per-key loop and small linear algebra."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mergeflow.errors import MergeflowError
from mergeflow.merging.common import StateDict, TaskVectors, merge_keys, output_dtype, stack_key
from mergeflow.merging.predicates import KeyPredicate

# (stack of T task matrices, (T, m, n) with m >= n, in float32/64; transposed?) -> merged (m, n) matrix.
MatrixMerge = Callable[[torch.Tensor, bool], torch.Tensor]


def polar_factor(matrix: torch.Tensor) -> torch.Tensor:
    """The orthogonal polar factor U V^T of a thin SVD: the nearest matrix with orthonormal columns (or rows)."""
    left, _, right = torch.linalg.svd(matrix, full_matrices=False)
    return left @ right


def merge_per_key(task_vectors: TaskVectors, is_matrix: KeyPredicate, merge_matrix: MatrixMerge, non_matrix_scale: float) -> StateDict:
    """Run ``merge_matrix`` on every matrix key and non_matrix_scale * mean_t tau_t on every other key.

    Matrices are handed over in the tall orientation (wide ones transposed; ``transposed`` says so, for the
    one method whose rule is not transpose-symmetric) and transposed back. All-zero matrices (CLIP's untouched
    text tensors) are skipped: every SVD method maps them to zero anyway, and their SVD is wasted work.
    """
    keys = merge_keys(task_vectors)
    merged: StateDict = {}
    for key in keys:
        stack = stack_key(task_vectors, key)
        if not is_matrix(key, next(iter(task_vectors.values()))[key]):
            result = non_matrix_scale * stack.mean(dim=0)
        elif stack.ndim != 3:
            raise MergeflowError(f"the matrix predicate selected {key!r}, which has shape {tuple(stack.shape[1:])}, not 2-D")
        elif not stack.any():
            result = torch.zeros_like(stack[0])
        else:
            transposed = stack.shape[1] < stack.shape[2]
            result = merge_matrix(stack.mT if transposed else stack, transposed)
            result = result.mT if transposed else result
        merged[key] = result.contiguous().to(output_dtype(task_vectors, key))
    return merged
