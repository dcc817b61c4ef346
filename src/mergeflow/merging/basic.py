"""The two linear baselines: weight averaging and Task Arithmetic."""

from __future__ import annotations

from mergeflow.merging.common import StateDict, TaskVectors, check_number, merge_keys, scaled_sum


def weight_averaging(task_vectors: TaskVectors) -> StateDict:
    """(1/T) * sum_t tau_t: theta_0 plus this delta is the plain average of the experts' weights."""
    keys = merge_keys(task_vectors)
    return scaled_sum(task_vectors, keys, 1.0 / len(task_vectors))


def task_arithmetic(task_vectors: TaskVectors, *, scale: float = 0.3) -> StateDict:
    """scale * sum_t tau_t. Default 0.3 is the fixed coefficient of the AdaMerging/EMR/AdaRank ViT baselines;
    tall_masks and TSV search it on validation over {0.1, ..., 1.0}."""
    keys = merge_keys(task_vectors)
    return scaled_sum(task_vectors, keys, check_number("scale", scale))
