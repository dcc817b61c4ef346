"""Merged artifacts on disk: one safetensors file per method, a merged model or a mask bank.

Stages save and load through this module; mask banks use the one bank-file format of ``merging.bankfile``.
Layout:

- ``format=model``: the merged image encoder's state dict, keys as in ``clip.visual.state_dict()``.
- a mask bank: the bit-packed bank file of ``merging.bankfile`` (one shared vector, 1 bit per parameter per task),
  with the per-task selections as JSON in its ``info`` metadata.

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
from mergeflow.merging.bankfile import BANK_FORMAT, MaskBankFile, write_mask_bank
from mergeflow.merging.common import StateDict
from mergeflow.statedict.io import read_safetensors, save_tensors
from mergeflow.statedict.lazy import LazySafetensors

FORMAT_MODEL = "model"
FORMAT_VERSION = "1"


def _metadata(kind: str, method: str, info: Mapping[str, Any]) -> dict[str, str]:
    return {"format": kind, "format_version": FORMAT_VERSION, "method": method, "info": json.dumps(dict(info), sort_keys=True)}


def save_merged_model(path: str | os.PathLike[str], state: Mapping[str, torch.Tensor], method: str,
                      info: Mapping[str, Any]) -> None:
    """A single merged model (theta_0 + merged delta): every task uses these weights with its own head."""
    save_tensors(path, dict(state), metadata=_metadata(FORMAT_MODEL, method, info))


def save_mask_bank(path: str | os.PathLike[str], bank: MaskBank, method: str, info: Mapping[str, Any]) -> None:
    """The shared vector once plus bit-packed per-task masks (``merging.bankfile``), with provenance in ``info``."""
    write_mask_bank(path, bank, method=method, info=info)


def load_merged(path: str | os.PathLike[str]) -> tuple[StateDict | MaskBank, dict[str, Any]]:
    """A merged model (state dict) or a MaskBank, and the metadata (``method``, ``info``) written with it."""
    if LazySafetensors(path).metadata.get("format") == BANK_FORMAT:
        bank_file = MaskBankFile(path)
        raw = bank_file.file.metadata
        return bank_file.load(), {"method": raw.get("method"), "info": json.loads(raw.get("info", "{}"))}
    tensors, raw = read_safetensors(path)
    if raw.get("format_version") != FORMAT_VERSION or raw.get("format") != FORMAT_MODEL:
        raise MergeflowError(f"{path}: not a mergeflow merged artifact (format {raw.get('format')!r}, version {raw.get('format_version')!r})")
    return tensors, {"method": raw.get("method"), "info": json.loads(raw.get("info", "{}"))}


def task_encoder(merged: StateDict | MaskBank, base: Mapping[str, torch.Tensor], task: str) -> StateDict:
    """The image-encoder weights a stored merge gives task ``task`` (task known): its reconstruction, or the one model."""
    if isinstance(merged, MaskBank):
        return reconstruct(base, merged, task)
    return dict(merged)
