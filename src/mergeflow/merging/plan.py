"""Every method as (global statistics passes, if any) + a per-key kernel, over task vectors served key by key.

The in-memory functions (``ties_merge``, ``tall_ta`` …) and the streaming runner (``merging.streaming``) both
build a :class:`MergePlan` from a :class:`KeyVectors` source and call the same kernels, so the two paths agree
bit for bit; only the source differs (a dict of tensors, or memory-mapped files read one key at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from mergeflow.merging.bank import MaskBank
from mergeflow.merging.common import StateDict, TaskVectors, merge_keys
from mergeflow.merging.topk import magnitude_threshold


class KeyVectors(Protocol):
    """Task vectors served one key at a time: ``tensors(key)`` is [tau_t[key] for t in names], in the
    vectors' own dtype; ``keys`` are the sorted floating-point keys to merge."""

    names: list[str]
    keys: list[str]

    def tensors(self, key: str) -> list[torch.Tensor]: ...

    def magnitude_thresholds(self, keep: float) -> list[torch.Tensor | None]:
        """Per task, the global |x| threshold keeping a fraction ``keep`` (see ``topk.magnitude_threshold``)."""
        ...


class InMemoryVectors:
    """Task vectors already in memory (validated by ``merge_keys``); thresholds by one global kthvalue per task."""

    def __init__(self, task_vectors: TaskVectors) -> None:
        self.keys = merge_keys(task_vectors)
        self.names = list(task_vectors)
        self._vectors = task_vectors

    def tensors(self, key: str) -> list[torch.Tensor]:
        return [vector[key] for vector in self._vectors.values()]

    def magnitude_thresholds(self, keep: float) -> list[torch.Tensor | None]:
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
    """

    kernel: KeyKernel
    rescalers: dict[str, float] | None = None

    @property
    def returns_bank(self) -> bool:
        return self.rescalers is not None


def delta_kernel(compute: Callable[[str, Sequence[torch.Tensor]], torch.Tensor]) -> KeyKernel:
    """Wrap a (key, tensors) -> merged tensor function as a kernel."""
    return lambda key, tensors: KeyResult(compute(key, tensors))


def run_plan(plan: MergePlan, vectors: KeyVectors) -> StateDict | MaskBank:
    """Apply the plan's kernel to every key: the merged delta, or a MaskBank for mask methods."""
    merged: StateDict = {}
    masks: dict[str, StateDict] = {name: {} for name in vectors.names}
    for key in vectors.keys:
        result = plan.kernel(key, vectors.tensors(key))
        merged[key] = result.merged
        if plan.rescalers is not None and result.masks is not None:
            for name, mask in zip(vectors.names, result.masks):
                masks[name][key] = mask
    if plan.rescalers is None:
        return merged
    return MaskBank(merged=merged, masks=masks, rescalers=dict(plan.rescalers))


def in_memory(planner: Callable[..., MergePlan], task_vectors: TaskVectors, **hyperparameters: object) -> StateDict | MaskBank:
    """The in-memory method: validate, build the plan from ``task_vectors``, run it over every key."""
    vectors = InMemoryVectors(task_vectors)
    return run_plan(planner(vectors, **hyperparameters), vectors)
