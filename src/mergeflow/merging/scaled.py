"""A method's delta as ``offset + scale * direction``, so a validation grid over ``scale`` costs one merge.

For TA, TIES, Consensus, TSV-M and Iso-C/CTS the kernel is ``scale * X`` (X computed without the scale), so X is the
method at scale 1; CART's kernel is ``average + scale * low_rank_sum``, and ``cart.cart_parts`` hands both terms over.
:meth:`ScaledMerge.at` repeats the kernel's last operations on the same compute-dtype tensors, so it equals the
method run at that scale exactly, provided the task vectors are already in the compute dtype (float32/float64):
otherwise the method casts each key back to fp16/bf16 and the rescaled copy would round differently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mergeflow.declarations.common import check_number
from mergeflow.merging.common import StateDict, TaskVectors, compute_dtype

# (task vectors, every hyperparameter but scale) -> the method's scale-free parts.
ScaleParts = Callable[..., "ScaledMerge"]


@dataclass(frozen=True)
class ScaledMerge:
    """Per key, ``offset[key] + scale * direction[key]``; a key in only one of them takes just that term."""

    direction: StateDict
    offset: StateDict

    def at(self, scale: float) -> StateDict:
        """The merged delta at ``scale`` (new tensors where the scale enters; a pure-offset key is shared)."""
        scale = check_number("scale", scale)
        keys = dict.fromkeys([*self.offset, *self.direction])  # the method's key order: one of the two has every key
        merged: StateDict = {}
        for key in keys:
            direction, offset = self.direction.get(key), self.offset.get(key)
            if direction is None:
                assert offset is not None
                merged[key] = offset
            else:
                merged[key] = scale * direction if offset is None else offset + scale * direction
        return merged


def linear_parts(function: Callable[..., StateDict]) -> ScaleParts:
    """The parts of a method whose kernel is ``scale * X``: X is the method at scale 1 (1.0 * x is x exactly)."""

    def parts(task_vectors: TaskVectors, **hyperparameters: object) -> ScaledMerge:
        return ScaledMerge(direction=function(task_vectors, **hyperparameters, scale=1.0), offset={})

    return parts


def exactly_rescalable(task_vectors: TaskVectors) -> bool:
    """Whether rescaling equals rerunning: every floating tensor already in its compute dtype (no cast-back rounding)."""
    return all(
        tensor.dtype == compute_dtype(tensor.dtype)
        for vector in task_vectors.values()
        for tensor in vector.values()
        if tensor.is_floating_point()
    )
