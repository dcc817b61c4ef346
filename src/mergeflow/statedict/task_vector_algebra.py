"""Task vectors as values: tau = theta_t - theta_0 that add, subtract, scale and apply to a base in one expression.

``sum(taus).apply_to(base, scale=0.3)`` is Task Arithmetic; ``-tau`` is forgetting a task. Every operation checks
that both sides have the same keys, shapes and dtypes, so a mismatched pair fails at once with the key named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from mergeflow.errors import MergeflowError
from mergeflow.statedict.io import check_finite
from mergeflow.statedict.task_vectors import apply_task_vector, task_vector


@dataclass(frozen=True, eq=False)
class TaskVector:
    """The floating-point entries of theta_t - theta_0 (integer buffers are not part of a task vector)."""

    tensors: Mapping[str, torch.Tensor]

    def __post_init__(self) -> None:
        if not self.tensors:
            raise MergeflowError("a task vector needs at least one floating-point entry")
        integer = sorted(key for key, value in self.tensors.items() if not value.is_floating_point())
        if integer:
            raise MergeflowError(f"a task vector holds floating-point entries only, got integer entries {integer[:5]}")
        check_finite(dict(self.tensors), "task vector")

    @classmethod
    def between(cls, base: Mapping[str, torch.Tensor], expert: Mapping[str, torch.Tensor], name: str = "expert") -> TaskVector:
        """expert - base over floating-point entries, after checking both have the same keys, shapes and dtypes."""
        return cls(task_vector(dict(expert), dict(base), name))

    def _combine(self, other: TaskVector, sign: float) -> TaskVector:
        if not isinstance(other, TaskVector):
            return NotImplemented
        missing, extra = sorted(set(self.tensors) - set(other.tensors)), sorted(set(other.tensors) - set(self.tensors))
        if missing or extra:
            raise MergeflowError(f"task vectors have different keys (missing {missing[:5]}, unexpected {extra[:5]})")
        for key, value in self.tensors.items():
            if other.tensors[key].shape != value.shape or other.tensors[key].dtype != value.dtype:
                raise MergeflowError(f"task vectors disagree on {key!r}: {tuple(value.shape)} {value.dtype} vs "
                                     f"{tuple(other.tensors[key].shape)} {other.tensors[key].dtype}")
        return TaskVector({key: value + sign * other.tensors[key] for key, value in self.tensors.items()})

    def __add__(self, other: TaskVector) -> TaskVector:
        return self._combine(other, 1.0)

    def __radd__(self, other: object) -> TaskVector:
        if isinstance(other, int) and other == 0:  # sum([...]) starts from 0
            return self
        return NotImplemented

    def __sub__(self, other: TaskVector) -> TaskVector:
        return self._combine(other, -1.0)

    def __neg__(self) -> TaskVector:
        return self * -1.0

    def __mul__(self, factor: float) -> TaskVector:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            return NotImplemented
        return TaskVector({key: value * float(factor) for key, value in self.tensors.items()})

    __rmul__ = __mul__

    def apply_to(self, base: Mapping[str, torch.Tensor], scale: float = 1.0) -> dict[str, torch.Tensor]:
        """theta_0 + scale * tau, as a new state dict; entries the task vector lacks (integer buffers) are copied."""
        for key, value in self.tensors.items():
            if key in base and base[key].shape != value.shape:
                raise MergeflowError(f"task vector {key!r} has shape {tuple(value.shape)}, the base has {tuple(base[key].shape)}")
        return apply_task_vector(dict(base), dict(self.tensors), scale)
