"""Devices and autocast for every stage that runs a model or an SVD: ``runtime.device`` and ``runtime.autocast``.

Library functions take ``device: torch.device`` (default :data:`CPU`) and, where a model runs forward,
``autocast`` (default ``"none"``); stages pass ``resolve_device(params.runtime.device)`` and
``resolve_autocast(params.runtime.autocast, device)``. The convention everywhere: models and frozen tensors move to
the device once, each batch moves at the loop, outputs come back with ``.cpu()`` before anything is written, and
seeded generators stay on the CPU (so the same batches and samples are drawn whatever the device).

On the CPU without autocast every result is bit-identical to the code before devices existed: ``tensor.to(cpu)``
and ``.cpu()`` return the very tensor when it is already there, and ``autocast_context("none", ...)`` enters no context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TypeVar

import torch

from mergeflow.errors import MergeflowError
from mergeflow.runtime.spec import check_autocast_mode, check_device_spec

CPU = torch.device("cpu")
K = TypeVar("K")
_NO_GPU = ("torch sees no CUDA GPU here (torch.cuda.is_available() is False: a CPU-only torch build, no driver, or "
           "CUDA_VISIBLE_DEVICES hides every GPU)")


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> the current CUDA device if torch sees a GPU, else the CPU; ``cpu``; ``cuda`` / ``cuda:N`` -> that
    GPU, or a MergeflowError saying what to do when it is not visible."""
    spec = check_device_spec(spec)
    if spec == "cpu":
        return CPU
    if not torch.cuda.is_available():
        if spec == "auto":
            return CPU
        raise MergeflowError(f"device {spec!r}: {_NO_GPU}; set runtime.device to auto (a GPU when one is visible, "
                             "else the CPU) or cpu, or run on a machine with a CUDA GPU")
    if spec in ("auto", "cuda"):
        return torch.device("cuda", torch.cuda.current_device())
    index, count = int(spec.partition(":")[2]), torch.cuda.device_count()
    if index >= count:
        raise MergeflowError(f"device {spec!r}: torch sees {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1}); "
                             "use one of those, cuda, or auto (CUDA_VISIBLE_DEVICES renumbers the visible GPUs from 0)")
    return torch.device("cuda", index)


def resolve_autocast(mode: str, device: torch.device) -> str:
    """``mode`` checked against ``device``: fp16 autocast is CUDA-only (on the CPU use bf16, or none)."""
    mode = check_autocast_mode(mode)
    if mode == "fp16" and device.type != "cuda":
        raise MergeflowError(f"autocast fp16 runs on a CUDA device only, and this stage runs on {device}: "
                             "set runtime.autocast to bf16 (the CPU supports it) or none")
    return mode


def autocast_context(mode: str, device: torch.device) -> contextlib.AbstractContextManager[object]:
    """The context a model's forward pass runs in: nothing for ``none`` (bit-identical results), else
    ``torch.autocast`` on ``device``'s type in bfloat16 (``bf16``) or float16 (``fp16``, CUDA only)."""
    mode = resolve_autocast(mode, device)
    if mode == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if mode == "bf16" else torch.float16)


def grad_scaler(mode: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 training (float16 gradients underflow without one); None for none and bf16."""
    return torch.amp.GradScaler(device.type) if resolve_autocast(mode, device) == "fp16" else None


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """``loss.backward(); optimizer.step()``, through ``scaler`` when fp16 autocast needs one (``grad_scaler``)."""
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def to_device(tensors: Mapping[K, torch.Tensor], device: torch.device) -> dict[K, torch.Tensor]:
    """Every tensor of ``tensors`` on ``device`` (the same tensors where they already are)."""
    return {key: value.to(device) for key, value in tensors.items()}


def to_cpu(tensors: Mapping[K, torch.Tensor]) -> dict[K, torch.Tensor]:
    """Every tensor of ``tensors`` on the CPU and contiguous, as safetensors writes them (the same tensors when
    they already are)."""
    return {key: value.cpu().contiguous() for key, value in tensors.items()}
