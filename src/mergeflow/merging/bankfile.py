"""A mask bank on disk: one safetensors file with the shared vector, bit-packed per-task masks and the rescalers.

Layout: ``merged/KEY`` holds the shared delta (TALL: tau_MTL; EMR: tau_uni) in the task vectors' dtype;
``mask/I/KEY`` holds task I's mask for KEY packed 8 entries per byte (``statedict.bitpack``). The metadata
holds the format tag, the task names (index I is their position), every key's original shape, the per-task
rescalers and, when known, the method and its hyperparameters. T tasks cost one delta plus T/8 bytes a
parameter instead of T models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import torch

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank, reconstruct, task_key_delta
from mergeflow.merging.common import StateDict, add_to_base, compute_dtype
from mergeflow.statedict.bitpack import pack_bits, packed_size, unpack_bits, unpack_bits_as
from mergeflow.statedict.lazy import LazySafetensors
from mergeflow.statedict.writer import Layout, SafetensorsWriter

BANK_FORMAT = "mergeflow-mask-bank/1"


def merged_name(key: str) -> str:
    return f"merged/{key}"


def mask_name(task_index: int, key: str) -> str:
    return f"mask/{task_index}/{key}"


def bank_layout(keys: Sequence[str], dtypes: Mapping[str, torch.dtype], shapes: Mapping[str, tuple[int, ...]], num_tasks: int) -> Layout:
    """Every entry of a bank file: the shared vector per key, then each task's packed masks."""
    layout = [(merged_name(key), dtypes[key], tuple(shapes[key])) for key in keys]
    for index in range(num_tasks):
        for key in keys:
            numel = 1
            for size in shapes[key]:
                numel *= size
            layout.append((mask_name(index, key), torch.uint8, (packed_size(numel),)))
    return layout


def bank_metadata(
    tasks: Sequence[str],
    shapes: Mapping[str, tuple[int, ...]],
    rescalers: Mapping[str, float],
    method: str | None = None,
    hyperparameters: Mapping[str, object] | None = None,
    info: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """The bank's metadata strings (safetensors metadata is str -> str, so the structured parts are JSON)."""
    metadata = {
        "format": BANK_FORMAT,
        "tasks": json.dumps(list(tasks)),
        "shapes": json.dumps({key: list(shape) for key, shape in shapes.items()}),
        "rescalers": json.dumps({task: float(rescalers[task]) for task in tasks}),
    }
    if method is not None:
        metadata["method"] = method
    if hyperparameters is not None:
        metadata["hyperparameters"] = json.dumps(dict(hyperparameters))
    if info is not None:
        metadata["info"] = json.dumps(dict(info), sort_keys=True)
    return metadata


def write_mask_bank(
    path: str | os.PathLike[str], bank: MaskBank, *, method: str | None = None,
    hyperparameters: Mapping[str, object] | None = None, info: Mapping[str, object] | None = None,
) -> None:
    """Write an in-memory MaskBank as a bank file (atomically); ``info`` is free-form provenance (e.g. chosen λ)."""
    keys = list(bank.merged)
    shapes = {key: tuple(value.shape) for key, value in bank.merged.items()}
    dtypes = {key: value.dtype for key, value in bank.merged.items()}
    metadata = bank_metadata(bank.tasks, shapes, bank.rescalers, method, hyperparameters, info)
    with SafetensorsWriter(path, bank_layout(keys, dtypes, shapes, len(bank.tasks)), metadata) as writer:
        for key in keys:
            writer.write(merged_name(key), bank.merged[key])
        for index, task in enumerate(bank.tasks):
            for key in keys:
                writer.write(mask_name(index, key), pack_bits(bank.masks[task][key]))


class MaskBankFile:
    """A bank file opened lazily: task names, rescalers and shapes from the header; tensors read on demand."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.file = LazySafetensors(path)
        metadata = self.file.metadata
        if metadata.get("format") != BANK_FORMAT:
            raise MergeflowError(f"{path}: not a mergeflow mask bank (metadata format {metadata.get('format')!r})")
        try:
            self.tasks: list[str] = list(json.loads(metadata["tasks"]))
            self.shapes: dict[str, tuple[int, ...]] = {key: tuple(shape) for key, shape in json.loads(metadata["shapes"]).items()}
            self.rescalers: dict[str, float] = {task: float(value) for task, value in json.loads(metadata["rescalers"]).items()}
        except (KeyError, ValueError, TypeError) as exc:
            raise MergeflowError(f"{path}: corrupt mask-bank metadata ({exc})") from exc
        self.method = metadata.get("method")
        self.keys = list(self.shapes)

    def task_index(self, task: str) -> int:
        if task not in self.tasks:
            raise MergeflowError(f"unknown task {task!r}; the mask bank holds {', '.join(self.tasks)}")
        return self.tasks.index(task)

    def merged(self, key: str) -> torch.Tensor:
        return self.file.get(merged_name(key))

    def mask(self, task: str, key: str) -> torch.Tensor:
        return unpack_bits(self.file.get(mask_name(self.task_index(task), key)), self.shapes[key])

    def task_delta(self, task: str) -> StateDict:
        """rescaler_t * (m_t ⊙ merged), reading only the shared vector and task t's packed masks."""
        rescaler = self.rescalers[self.tasks[self.task_index(task)]]
        return {key: task_key_delta(self.merged(key), self.mask(task, key), rescaler) for key in self.keys}

    def load_packed(self) -> PackedMaskBank:
        """The bank in memory as stored (masks stay bit-packed): what a routed server holds."""
        return PackedMaskBank(
            tasks=list(self.tasks),
            merged={key: self.merged(key) for key in self.keys},
            packed=[{key: self.file.get(mask_name(index, key)) for key in self.keys} for index in range(len(self.tasks))],
            shapes=dict(self.shapes),
            rescalers=dict(self.rescalers),
        )

    def load(self) -> MaskBank:
        """The whole bank in memory, masks unpacked to torch.bool."""
        return MaskBank(
            merged={key: self.merged(key) for key in self.keys},
            masks={task: {key: self.mask(task, key) for key in self.keys} for task in self.tasks},
            rescalers=dict(self.rescalers),
        )


@dataclass(frozen=True)
class PackedMaskBank:
    """A mask bank held in memory with its masks still packed: one shared vector + T/8 bytes a parameter.

    Task-unknown serving keeps this, never T models; a task's delta is unpacked when a routed group needs it.
    """

    tasks: list[str]
    merged: StateDict
    packed: list[StateDict]
    shapes: dict[str, tuple[int, ...]]
    rescalers: dict[str, float]

    def task_delta(self, index: int, keys: Collection[str] | None = None) -> StateDict:
        """rescaler_t * (m_t ⊙ merged) for the task at ``index``: the values of ``MaskBank``'s reconstruction (masked-out
        entries may be -0 instead of +0, which adds to theta_0 identically), unpacked by float multiplication.
        ``keys`` limits it to the keys a partial forward reads (shared-trunk serving); None = every key."""
        if not 0 <= index < len(self.tasks):
            raise MergeflowError(f"task index {index} out of range: the mask bank holds {len(self.tasks)} tasks")
        rescaler = self.rescalers[self.tasks[index]]
        deltas = {}
        for key, value in self.merged.items():
            if keys is not None and key not in keys:
                continue
            dtype = compute_dtype(value.dtype)
            product = value.to(dtype) * unpack_bits_as(self.packed[index][key], self.shapes[key], dtype)
            deltas[key] = (product.mul_(rescaler) if rescaler != 1.0 else product).to(value.dtype)
        return deltas

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data held (shared vector + packed masks)."""
        tensors = [*self.merged.values(), *(value for masks in self.packed for value in masks.values())]
        return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def read_mask_bank(path: str | os.PathLike[str]) -> MaskBank:
    """A bank file as an in-memory MaskBank."""
    return MaskBankFile(path).load()


def reconstruct_task(base: Mapping[str, torch.Tensor], bank: MaskBank | MaskBankFile | str | os.PathLike[str], task: str) -> StateDict:
    """theta_0 + rescaler_t * (m_t ⊙ merged) from a MaskBank, an open bank file or a bank file's path."""
    if isinstance(bank, MaskBank):
        return reconstruct(base, bank, task)
    opened = bank if isinstance(bank, MaskBankFile) else MaskBankFile(bank)
    return add_to_base(base, opened.task_delta(task))
