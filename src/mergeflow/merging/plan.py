"""Every method as (global statistics passes, if any) + a per-key kernel, over task vectors served key by key.

The in-memory functions (``ties_merge``, ``tall_ta`` …) and the streaming runner (``merging.streaming``) both
build a :class:`MergePlan` from a :class:`KeyVectors` source and call the same kernels, so the two paths agree
bit for bit; only the source differs (a dict of tensors, or files read one key at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank
from mergeflow.merging.common import StackedRows, StateDict, TaskVectors, merge_keys
from mergeflow.merging.topk import RadixObserver, magnitude_threshold


class KeyVectors(Protocol):
    """Task vectors served one key at a time: ``tensors(key)`` is [tau_t[key] for t in names], in the
    vectors' own dtype; ``keys`` are the sorted floating-point keys to merge."""

    names: list[str]
    keys: list[str]

    def tensors(self, key: str) -> list[torch.Tensor]: ...

    def magnitude_thresholds(self, keep: float, final_pass: RadixObserver | None = None) -> list[torch.Tensor | None]:
        """Per task, the global |x| threshold keeping a fraction ``keep`` (see ``topk.magnitude_threshold``).
        A source that finds it by passes over the keys calls ``final_pass`` on its last one, for every key (see
        ``topk.streamed_magnitude_thresholds``); one that needs no pass (in memory) never calls it."""
        ...


class InMemoryVectors:
    """Task vectors already in memory (validated by ``merge_keys``); thresholds by one global kthvalue per task."""

    def __init__(self, task_vectors: TaskVectors) -> None:
        self.keys = merge_keys(task_vectors)
        self.names = list(task_vectors)
        self._vectors = task_vectors

    def tensors(self, key: str) -> list[torch.Tensor]:
        return [vector[key] for vector in self._vectors.values()]

    def magnitude_thresholds(self, keep: float, final_pass: RadixObserver | None = None) -> list[torch.Tensor | None]:
        return [magnitude_threshold([vector[key] for key in self.keys], keep) for vector in self._vectors.values()]


@dataclass(frozen=True)
class KeyResult:
    """One key's output: the merged (shared) tensor, plus one bool mask per task (task order) for bank methods."""

    merged: torch.Tensor
    masks: tuple[torch.Tensor, ...] | None = None


KeyKernel = Callable[[str, Sequence[torch.Tensor]], KeyResult]


@dataclass(frozen=True)
class MergePlan:
    """A method after its global passes: ``kernel`` maps (key, [tau_t[key]]) to that key's result.

    ``rescalers`` is None for methods returning a delta and {task: rescaler} for mask-bank methods.
    ``elementwise`` says each output entry depends only on the same entry of the inputs (given the global
    statistics), so :meth:`apply` may run the kernel on column chunks: the result is identical, and the
    temporaries stay in cache instead of costing a fresh page-faulted allocation per operation per key.
    """

    kernel: KeyKernel
    rescalers: dict[str, float] | None = None
    elementwise: bool = False

    @property
    def returns_bank(self) -> bool:
        return self.rescalers is not None

    def apply(self, key: str, tensors: Sequence[torch.Tensor]) -> KeyResult:
        """The kernel on one key, chunked when element-wise (same values bit for bit: no entry sees another)."""
        shape = tensors[0].shape
        if not self.elementwise or tensors[0].numel() <= CHUNK:
            return self.kernel(key, tensors)
        merged: torch.Tensor | None = None
        masks: list[torch.Tensor] | None = None
        for start, chunk in column_chunks(tensors):
            result = self.kernel(key, chunk)
            if merged is None:
                merged = torch.empty(tensors[0].numel(), dtype=result.merged.dtype)
                masks = None if result.masks is None else [torch.empty(tensors[0].numel(), dtype=torch.bool) for _ in result.masks]
            merged[start : start + len(result.merged)] = result.merged
            for out, mask in zip(masks or (), result.masks or (), strict=True):
                out[start : start + len(mask)] = mask
        assert merged is not None
        return KeyResult(merged.view(shape), None if masks is None else tuple(mask.view(shape) for mask in masks))


CHUNK = 1 << 16  # entries per task in one chunk: T x 256 KB of float32, cache-sized


def column_chunks(tensors: Sequence[torch.Tensor], size: int | None = None) -> Iterator[tuple[int, list[torch.Tensor]]]:
    """(offset, [tau_t.flatten()[offset:offset + size] for t]) over one key; a StackedRows stays a StackedRows
    (a view of its stack), so kernels still get the stack without a copy."""
    numel, size = tensors[0].numel(), size or CHUNK
    if isinstance(tensors, StackedRows):
        flat_stack = tensors.stacked.reshape(len(tensors), -1)
        for start in range(0, max(numel, 1), size):
            yield start, StackedRows(flat_stack[:, start : start + size])
        return
    flats = [tensor.reshape(-1) for tensor in tensors]
    for start in range(0, max(numel, 1), size):
        yield start, [flat[start : start + size] for flat in flats]


def delta_kernel(compute: Callable[[str, Sequence[torch.Tensor]], torch.Tensor]) -> KeyKernel:
    """Wrap a (key, tensors) -> merged tensor function as a kernel."""
    return lambda key, tensors: KeyResult(compute(key, tensors))


def run_plan(plan: MergePlan, vectors: KeyVectors) -> StateDict | MaskBank:
    """Apply the plan's kernel to every key: the merged delta, or a MaskBank for mask methods."""
    merged: StateDict = {}
    masks: dict[str, StateDict] = {name: {} for name in vectors.names}
    for key in vectors.keys:
        result = plan.apply(key, vectors.tensors(key))
        merged[key] = result.merged
        if plan.rescalers is not None and result.masks is not None:
            for name, mask in zip(vectors.names, result.masks, strict=True):
                masks[name][key] = mask
    if plan.rescalers is None:
        return merged
    return MaskBank(merged=merged, masks=masks, rescalers=dict(plan.rescalers))


def in_memory(planner: Callable[..., MergePlan], task_vectors: TaskVectors, **hyperparameters: object) -> StateDict | MaskBank:
    """The in-memory method: validate, build the plan from ``task_vectors``, run it over every key."""
    vectors = InMemoryVectors(task_vectors)
    return run_plan(planner(vectors, **hyperparameters), vectors)


def as_delta(result: StateDict | MaskBank) -> StateDict:
    """The result of a delta method's plan (no rescalers): the merged delta."""
    if isinstance(result, MaskBank):
        raise MergeflowError("a mask method's plan gave a MaskBank where a merged delta was expected")
    return result


def as_bank(result: StateDict | MaskBank) -> MaskBank:
    """The result of a mask method's plan (with rescalers): the MaskBank."""
    if not isinstance(result, MaskBank):
        raise MergeflowError("a delta method's plan gave a merged delta where a MaskBank was expected")
    return result
