"""Streaming merges: base and experts are read key by key from safetensors files, output written key by key.

Every registry method runs through its plan (``merging.plan``): the plan's global passes and its per-key
kernel are the very code the in-memory functions run, so a streaming merge equals the in-memory one exactly.
Peak memory is one key's tensors per expert (plus the output of that key), whatever the number of experts.
Passes over the files: one for element-wise methods without statistics (TA, averaging, TALL-TA, Consensus-TA,
SVD methods), two for EMR (rescalers, then output), three for TIES and TALL-TIES (two radix-select passes for the
exact per-task thresholds, the sign votes counted on the second, see ``ties.SignVotes``, then output; four when the
votes cannot be settled on that pass, which takes data built to defeat it; five for float64, whose radix select
takes four passes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Literal

import torch

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import task_key_delta
from mergeflow.merging.bankfile import bank_layout, bank_metadata, mask_name, merged_name
from mergeflow.merging.common import StackedRows, add_to_base, compute_dtype
from mergeflow.merging.plan import MergePlan
from mergeflow.merging.registry import NO_EFFECT_HINT, check_meaningful, get_method, resolve_hyperparameters
from mergeflow.merging.topk import RadixObserver, streamed_magnitude_thresholds
from mergeflow.statedict.bitpack import pack_bits
from mergeflow.statedict.lazy import LazySafetensors, all_finite, check_compatible_files
from mergeflow.statedict.writer import SafetensorsWriter


class StreamingVectors:
    """Task vectors tau_t = theta_t - theta_0 computed key by key from open files (a ``KeyVectors`` source)."""

    def __init__(self, base: LazySafetensors, experts: Mapping[str, LazySafetensors]) -> None:
        check_compatible_files(base, experts)
        self.base = base
        self.experts = dict(experts)
        self.names = list(experts)
        self.keys = sorted(key for key in base.keys if base.dtype(key).is_floating_point)
        if not self.keys:
            raise MergeflowError(f"{base.path}: no floating-point entries to merge")
        self._checked: set[str] = set()
        self._buffer: torch.Tensor | None = None
        self._largest_stack = len(self.names) * max(base.numel(key) for key in self.keys)

    def read(self, key: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """theta_0[key] and every tau_t[key], computed in the entry's own dtype exactly as ``task_vector`` does
        (``expert - base``), but in place: straight into the rows of one stack when the dtype is already the
        compute dtype (float32/64), so kernels get their (T, *shape) stack without another copy."""
        theta = self.base.get(key, check_finite=key not in self._checked)
        experts = list(self.experts.values())
        if theta.dtype == compute_dtype(theta.dtype):
            stack = self._stack_buffer(len(experts) * theta.numel(), theta.dtype).view(len(experts), *theta.shape)
            for row, expert in zip(stack, experts, strict=True):
                expert.read_into(key, row, check_finite=False).sub_(theta)
            taus: list[torch.Tensor] = StackedRows(stack)
        else:
            taus = [expert.get(key, check_finite=False).sub_(theta) for expert in experts]
        if key not in self._checked:  # once per key: later passes re-read the same bytes
            finite = all_finite(taus.stacked) if isinstance(taus, StackedRows) else all(all_finite(tau) for tau in taus)
            if not finite:  # tau is finite when the expert is (theta is checked above)
                for expert in experts:
                    expert.get(key)  # names the file and key; a mere overflow of tau reaches the writer's check
            self._checked.add(key)
        return theta, taus

    def _stack_buffer(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """One reused buffer for the stacks: a fresh large allocation per key costs page faults and zeroing
        (the allocator maps blocks over 32 MB anew every time). The stack of one key is therefore only valid
        until the next ``read``; every pass and kernel is done with a key before reading the next."""
        if self._buffer is None or self._buffer.dtype != dtype or self._buffer.numel() < numel:
            self._buffer = None
            self._buffer = torch.empty(max(numel, self._largest_stack), dtype=dtype)
        return self._buffer[:numel]

    def tensors(self, key: str) -> list[torch.Tensor]:
        return self.read(key)[1]

    def magnitude_thresholds(self, keep: float, final_pass: RadixObserver | None = None) -> list[torch.Tensor | None]:
        wide = any(self.base.dtype(key) == torch.float64 for key in self.keys)
        magnitude_dtype = torch.float64 if wide else torch.float32
        return streamed_magnitude_thresholds(self.keys, self.tensors, len(self.names), magnitude_dtype, keep, final_pass=final_pass)


@dataclass(frozen=True)
class MergeSummary:
    """What a streaming merge wrote: a merged model, a mask bank, or one task's reconstructed model."""

    method: str
    output: Literal["model", "bank", "task"]
    path: str
    tasks: list[str]
    hyperparameters: dict[str, object]
    rescalers: dict[str, float] | None = None


def merge_files(
    method: str,
    base_path: str | os.PathLike[str],
    expert_paths: Mapping[str, str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    overrides: Mapping[str, object] | None = None,
    *,
    task: str | None = None,
) -> MergeSummary:
    """Merge checkpoints on disk with a registry method, streaming; the output is written atomically.

    Delta methods write theta_0 + delta (a full model, integer buffers copied from the base). Mask methods
    (tall_ta, tall_ties, emr) write the mask bank (``merging.bankfile``), or with ``task`` that task's
    reconstructed model theta_0 + rescaler * (m_t ⊙ merged).
    """
    spec = get_method(method)
    hyperparameters = resolve_hyperparameters(method, overrides)
    if task is not None and spec.returns != "bank":
        raise MergeflowError(f"--task applies to mask-bank methods (tall_ta, tall_ties, emr), not {method}")
    if expert_paths:
        check_meaningful(method, len(expert_paths), hyperparameters)
    with ExitStack() as stack:
        base = stack.enter_context(LazySafetensors(base_path))
        experts = {name: stack.enter_context(LazySafetensors(path)) for name, path in expert_paths.items()}
        vectors = StreamingVectors(base, experts)
        if task is not None and task not in vectors.names:
            raise MergeflowError(f"unknown task {task!r}; the experts are {', '.join(vectors.names)}")
        plan: MergePlan = spec.plan(vectors, **hyperparameters)
        summary = MergeSummary(method, "model", str(out_path), vectors.names, dict(hyperparameters), plan.rescalers)
        if spec.returns == "bank" and task is None:
            _write_bank(vectors, plan, out_path, method, hyperparameters)
            return replace(summary, output="bank")
        _write_model(vectors, plan, out_path, task, method)
        return summary if task is None else replace(summary, output="task")


def _write_model(vectors: StreamingVectors, plan: MergePlan, out_path: str | os.PathLike[str], task: str | None,
                 method: str) -> None:
    """theta_0 + delta key by key (delta = the merged vector, or task t's reconstructed task vector); an output equal
    to theta_0 (no key changed) is refused before the file is committed (``registry.require_effect``'s rule)."""
    base = vectors.base
    merging = set(vectors.keys)
    index = vectors.names.index(task) if task is not None else None
    layout = [(key, base.dtype(key), base.shape(key)) for key in base.keys]
    changed = False
    with SafetensorsWriter(out_path, layout, base.metadata) as writer:
        for key in base.keys:
            if key not in merging:
                writer.write(key, base.get(key))
                continue
            theta, taus = vectors.read(key)
            result = plan.apply(key, taus)
            delta = result.merged
            if index is not None and plan.rescalers is not None and result.masks is not None:
                delta = task_key_delta(result.merged, result.masks[index], plan.rescalers[vectors.names[index]])
            merged = add_to_base({key: theta}, {key: delta})[key]
            changed = changed or not torch.equal(merged, theta)
            writer.write(key, merged)
        if not changed:  # raised inside the writer: the temp file is removed, nothing is written
            what = "the merged model" if task is None else f"the model of task {task!r}"
            raise MergeflowError(f"{method}: {what} would be theta_0 unchanged (no entry differs from the base); {NO_EFFECT_HINT}")


def _write_bank(
    vectors: StreamingVectors, plan: MergePlan, out_path: str | os.PathLike[str], method: str, hyperparameters: Mapping[str, object]
) -> None:
    """The shared vector and the packed masks of every task, key by key."""
    base, keys = vectors.base, vectors.keys
    shapes = {key: base.shape(key) for key in keys}
    layout = bank_layout(keys, {key: base.dtype(key) for key in keys}, shapes, len(vectors.names))
    metadata = bank_metadata(vectors.names, shapes, plan.rescalers or {}, method, hyperparameters)
    rescalers = plan.rescalers or {}
    kept = [False] * len(vectors.names)  # per task: its mask has kept some nonzero shared entry so far
    with SafetensorsWriter(out_path, layout, metadata) as writer:
        for key in keys:
            result = plan.apply(key, vectors.tensors(key))
            writer.write(merged_name(key), result.merged)
            nonzero = None if all(kept) else result.merged != 0
            for index, mask in enumerate(result.masks or ()):
                writer.write(mask_name(index, key), pack_bits(mask))
                if nonzero is not None and not kept[index]:
                    kept[index] = bool((mask & nonzero).any())
        unchanged = [name for name, keeps in zip(vectors.names, kept, strict=True) if not keeps or rescalers.get(name, 1.0) == 0]
        if unchanged:  # as registry.require_effect; raised inside the writer, so nothing is written
            raise MergeflowError(f"{method}: the model of task(s) {', '.join(unchanged)} would be theta_0 unchanged (the mask "
                                 f"keeps no nonzero entry of the shared vector); {NO_EFFECT_HINT}")
