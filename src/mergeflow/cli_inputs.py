"""What the commands read from their arguments: ``--expert NAME=PATH`` entries (``merge``, ``adapt``) and safetensors
files of one tensor per key (``route``: features; ``adapt``: heads and inputs), each refused with one line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mergeflow.errors import MergeflowError

if TYPE_CHECKING:
    import torch


def parse_experts(entries: list[str]) -> dict[str, str]:
    """``NAME=PATH`` entries to {name: path}, refusing empty or repeated names."""
    experts: dict[str, str] = {}
    for entry in entries:
        name, separator, path = entry.partition("=")
        name = name.strip()
        if not separator or not name or not path:
            raise MergeflowError(f"--expert expects NAME=PATH, got {entry!r}")
        if name in experts:
            raise MergeflowError(f"--expert {name!r} given twice")
        experts[name] = path
    return experts


def read_keyed_tensors(path: str, what: str, shape: str, keys: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of ``path``: one non-empty floating-point tensor of the dimensions ``shape`` names (e.g. "(N, D)")
    per key; with ``keys``, exactly those keys."""
    from mergeflow.statedict.io import load_tensors

    tensors = load_tensors(path)
    if not tensors:
        raise MergeflowError(f"{path}: holds no tensors; write one {shape} tensor of {what} per key")
    if keys is not None:
        missing, extra = [key for key in keys if key not in tensors], sorted(set(tensors) - set(keys))
        if missing or extra:
            raise MergeflowError(f"{path}: needs one {what} tensor per expert task {list(keys)} (missing {missing}, unexpected {extra})")
    dims = shape.count(",") + 1
    for key, value in tensors.items():
        if value.dim() != dims or not value.is_floating_point() or value.shape[0] == 0:
            raise MergeflowError(f"{path}: {key!r} is a {value.dtype} tensor of shape {tuple(value.shape)}; "
                                 f"each key must hold a non-empty {shape} floating-point tensor of {what}")
    return tensors
