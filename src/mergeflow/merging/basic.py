"""The two linear baselines: weight averaging and Task Arithmetic."""

from __future__ import annotations

from mergeflow.declarations.common import check_number
from mergeflow.merging.common import StateDict, TaskVectors, summed
from mergeflow.merging.plan import KeyVectors, MergePlan, as_delta, delta_kernel, in_memory


def weight_averaging_plan(vectors: KeyVectors) -> MergePlan:
    """Per key (1/T) * sum_t tau_t; no global pass."""
    coefficient = 1.0 / len(vectors.names)
    return MergePlan(delta_kernel(lambda key, tensors: summed(tensors, coefficient)), elementwise=True)


def task_arithmetic_plan(vectors: KeyVectors, *, scale: float = 0.3) -> MergePlan:
    """Per key scale * sum_t tau_t; no global pass."""
    scale = check_number("scale", scale)
    return MergePlan(delta_kernel(lambda key, tensors: summed(tensors, scale)), elementwise=True)


def weight_averaging(task_vectors: TaskVectors) -> StateDict:
    """(1/T) * sum_t tau_t: theta_0 plus this delta is the plain average of the experts' weights."""
    return as_delta(in_memory(weight_averaging_plan, task_vectors))


def task_arithmetic(task_vectors: TaskVectors, *, scale: float = 0.3) -> StateDict:
    """scale * sum_t tau_t. Default 0.3 is the fixed coefficient of the AdaMerging/EMR/AdaRank ViT baselines;
    tall_masks and TSV search it on validation over {0.1, ..., 1.0}."""
    return as_delta(in_memory(task_arithmetic_plan, task_vectors, scale=scale))


