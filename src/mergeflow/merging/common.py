"""Plumbing every merging method shares: input validation, per-key stacking in a safe dtype, and value checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mergeflow.errors import MergeflowError
from mergeflow.statedict.io import check_finite
from mergeflow.statedict.task_vectors import apply_task_vector

StateDict = dict[str, torch.Tensor]
TaskVectors = Mapping[str, Mapping[str, torch.Tensor]]


def merge_keys(task_vectors: TaskVectors) -> list[str]:
    """The sorted floating-point keys every task vector shares, after refusing any mismatch or NaN/Inf.

    All task vectors must have the same keys, shapes and dtypes: a silent broadcast or promotion would merge
    tensors that do not belong together. Integer entries are skipped (task vectors never carry them).
    """
    if not isinstance(task_vectors, Mapping) or not task_vectors:
        raise MergeflowError("no task vectors to merge: pass a non-empty {task name: task vector} mapping")
    names = list(task_vectors)
    reference_name = names[0]
    reference = task_vectors[reference_name]
    if not reference:
        raise MergeflowError(f"task vector {reference_name!r} has no entries")
    for name in names:
        vector = task_vectors[name]
        missing, extra = sorted(set(reference) - set(vector)), sorted(set(vector) - set(reference))
        if missing or extra:
            raise MergeflowError(
                f"task vector {name!r} has different keys from {reference_name!r} "
                f"(missing {missing[:5]}, unexpected {extra[:5]})"
            )
        for key, value in reference.items():
            other = vector[key]
            if other.shape != value.shape:
                raise MergeflowError(
                    f"task vector {name!r}: {key!r} has shape {tuple(other.shape)}, "
                    f"{reference_name!r} has {tuple(value.shape)}"
                )
            if other.dtype != value.dtype:
                raise MergeflowError(f"task vector {name!r}: {key!r} has dtype {other.dtype}, {reference_name!r} has {value.dtype}")
        check_finite(dict(vector), f"task vector {name!r}")
    return sorted(key for key, value in reference.items() if value.is_floating_point())


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (fp16, bf16, fp32) is computed in float32 and cast back at the end."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class StackedRows(list[torch.Tensor]):
    """One key's task vectors as the rows of a (T, *shape) tensor in the compute dtype that the caller owns and
    will not reuse: ``stack_tensors`` hands ``stacked`` over as is instead of copying it (the streaming path)."""

    def __init__(self, stacked: torch.Tensor) -> None:
        super().__init__(stacked.unbind(0))
        self.stacked = stacked


def stack_tensors(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One key's task vectors as one new (T, *shape) tensor in the compute dtype (never aliases inputs, except
    a :class:`StackedRows`, whose stack is already new)."""
    if isinstance(tensors, StackedRows):
        return tensors.stacked
    dtype = compute_dtype(tensors[0].dtype)
    return torch.stack([tensor.detach().to(dtype) for tensor in tensors])


def stack_key(task_vectors: TaskVectors, key: str) -> torch.Tensor:
    """Entry ``key`` of every task vector as one new (T, *shape) tensor in the compute dtype (never aliases inputs)."""
    return stack_tensors([vector[key] for vector in task_vectors.values()])


def output_dtype(task_vectors: TaskVectors, key: str) -> torch.dtype:
    """The dtype results are cast back to: the task vectors' own dtype for that key."""
    return next(iter(task_vectors.values()))[key].dtype


def scaled_sum(task_vectors: TaskVectors, keys: Sequence[str], coefficient: float) -> StateDict:
    """coefficient * sum_t tau_t per key: the sum for TA and TALL, the mean (coefficient 1/T) for averaging."""
    return {key: summed([vector[key] for vector in task_vectors.values()], coefficient) for key in keys}


def summed(tensors: Sequence[torch.Tensor], coefficient: float) -> torch.Tensor:
    """coefficient * sum_t tau_t for one key, cast back to the task vectors' dtype (the kernel of TA and averaging)."""
    return (coefficient * stack_tensors(tensors).sum(dim=0)).to(tensors[0].dtype)


def masked(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """values where mask, else exactly +0 (a new tensor; NaN-free, unlike multiplying by the mask)."""
    return values.masked_fill(~mask, 0)


def add_to_base(base: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor]) -> StateDict:
    """theta_0 + delta in the base model's dtypes; entries without a delta (integer buffers) are copied from the base."""
    for key, value in delta.items():
        if key in base and base[key].shape != value.shape:
            raise MergeflowError(f"merged delta {key!r} has shape {tuple(value.shape)}, the base model has {tuple(base[key].shape)}")
    cast = {key: value.to(base[key].dtype) if key in base else value for key, value in delta.items()}
    return apply_task_vector(dict(base), cast)


