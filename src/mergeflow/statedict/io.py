"""Safetensors in and out: never unpickle, always validate, always write atomically."""

from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mergeflow.atomic import atomic_path
from mergeflow.errors import MergeflowError
from mergeflow.statedict.lazy import all_finite


def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Refuse NaN or Inf in floating-point entries: they silently poison every merge that touches them. (One sum per
    entry proves most of them finite: ``isfinite(value).all()`` on every read of an expert cost a second a stage.)"""
    for key, value in tensors.items():
        if value.is_floating_point() and not all_finite(value):
            raise MergeflowError(f"{where}: entry {key!r} contains NaN or Inf")


def _canonical_header(path: str | os.PathLike[str]) -> None:
    """Rewrite a safetensors header with sorted keys, in place and at the same length.

    safetensors stores the metadata in a hash map whose order changes from process to process, so the same tensors
    and metadata gave different bytes on every run, and DVC saw a changed output (and reran everything downstream).
    The header's content, its length and every data offset stay the same; only the order of its JSON keys is fixed.
    """
    with open(path, "r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        text = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
        if len(text) > size:  # never expected: the same JSON, reordered, is as long; leave the file as written
            return
        handle.seek(8)
        handle.write(text + b" " * (size - len(text)))


def save_tensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save a flat dict of tensors as safetensors (atomically, after a NaN/Inf check), byte-identical across runs."""
    check_finite(tensors, str(path))
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        _canonical_header(tmp)


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor and the metadata of a safetensors file, with readable errors for missing, corrupt or non-finite files."""
    if not os.path.exists(path):
        raise MergeflowError(f"{path}: no such file")
    if os.path.isdir(path):
        raise MergeflowError(f"{path}: is a directory, not a safetensors file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise MergeflowError(f"{path}: not a readable safetensors file ({exc})") from exc
    check_finite(tensors, str(path))
    return tensors, metadata


def load_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (see :func:`read_safetensors`)."""
    return read_safetensors(path)[0]
