"""Merged artifacts on disk: one safetensors file per method, a merged model or a mask bank.

All storage format decisions live here (readers and writers side by side), so a new encoding (e.g. bit-packed
masks) changes one module. Layout:

- ``format=model``: the merged image encoder's state dict, keys as in ``clip.visual.state_dict()``.
- ``format=mask_bank``: ``merged/<key>`` (the shared vector), ``mask/<task>/<key>`` (uint8 0/1); rescalers,
  the task order and the per-task selections are JSON in the metadata.

Every file also records the method and its resolved hyperparameters in the metadata, for provenance.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank, reconstruct
from mergeflow.merging.common import StateDict
from mergeflow.statedict.io import read_safetensors, save_tensors

FORMAT_MODEL = "model"
FORMAT_MASK_BANK = "mask_bank"
FORMAT_VERSION = "1"
_MERGED = "merged/"
_MASK = "mask/"


def _metadata(kind: str, method: str, info: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    fields = {"format": kind, "format_version": FORMAT_VERSION, "method": method, "info": json.dumps(dict(info), sort_keys=True)}
    fields.update({key: json.dumps(value, sort_keys=True) for key, value in (extra or {}).items()})
    return fields


def save_merged_model(path: str | os.PathLike[str], state: Mapping[str, torch.Tensor], method: str,
                      info: Mapping[str, Any]) -> None:
    """A single merged model (theta_0 + merged delta): every task uses these weights with its own head."""
    save_tensors(path, dict(state), metadata=_metadata(FORMAT_MODEL, method, info))


def save_mask_bank(path: str | os.PathLike[str], bank: MaskBank, method: str, info: Mapping[str, Any]) -> None:
    """The shared vector once plus one uint8 mask per task and key (safetensors has no bool-to-bit packing)."""
    for task in bank.tasks:
        if "/" in task:
            raise MergeflowError(f"task name {task!r} contains '/', which the mask-bank layout reserves")
    tensors = {f"{_MERGED}{key}": value for key, value in bank.merged.items()}
    for task, masks in bank.masks.items():
        tensors.update({f"{_MASK}{task}/{key}": mask.to(torch.uint8) for key, mask in masks.items()})
    extra = {"tasks": bank.tasks, "rescalers": bank.rescalers}
    save_tensors(path, tensors, metadata=_metadata(FORMAT_MASK_BANK, method, info, extra))


def load_merged(path: str | os.PathLike[str]) -> tuple[StateDict | MaskBank, dict[str, Any]]:
    """A merged model (state dict) or a MaskBank, and the metadata (``method``, ``info``) written with it."""
    tensors, raw = read_safetensors(path)
    kind = raw.get("format")
    if raw.get("format_version") != FORMAT_VERSION or kind not in (FORMAT_MODEL, FORMAT_MASK_BANK):
        raise MergeflowError(f"{path}: not a mergeflow merged artifact (format {kind!r}, version {raw.get('format_version')!r})")
    metadata: dict[str, Any] = {"method": raw.get("method"), "info": json.loads(raw.get("info", "{}"))}
    if kind == FORMAT_MODEL:
        return tensors, metadata
    tasks: list[str] = json.loads(raw["tasks"])
    rescalers: dict[str, float] = json.loads(raw["rescalers"])
    merged = {key[len(_MERGED):]: value for key, value in tensors.items() if key.startswith(_MERGED)}
    masks: dict[str, StateDict] = {task: {} for task in tasks}
    for key, value in tensors.items():
        if key.startswith(_MASK):
            task, _, name = key[len(_MASK):].partition("/")
            if task not in masks:
                raise MergeflowError(f"{path}: mask for task {task!r} not listed in the metadata ({', '.join(tasks)})")
            masks[task][name] = value.to(torch.bool)
    for task in tasks:
        if set(masks[task]) != set(merged):
            raise MergeflowError(f"{path}: task {task!r} has masks for different keys than the merged vector")
    return MaskBank(merged=merged, masks=masks, rescalers={task: float(rescalers[task]) for task in tasks}), metadata


def task_encoder(merged: StateDict | MaskBank, base: Mapping[str, torch.Tensor], task: str) -> StateDict:
    """The image-encoder weights a stored merge gives task ``task`` (task known): its reconstruction, or the one model."""
    if isinstance(merged, MaskBank):
        return reconstruct(base, merged, task)
    return dict(merged)
