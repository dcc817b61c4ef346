"""The grammar of ``runtime.device`` and ``runtime.autocast``, torch-free so that params.yaml validates without torch.

Device: ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda`` (the current CUDA device) or ``cuda:N``.
Autocast: ``none`` (no autocast context: results are what they were before devices existed), ``bf16`` or ``fp16``
(CUDA only: see ``runtime.device.autocast``).
"""

from __future__ import annotations

import re
from typing import TypeGuard

from mergeflow.errors import MergeflowError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
AUTOCAST_MODES = ("none", "bf16", "fp16")
_DEVICE = re.compile(r"(auto|cpu|cuda(:[0-9]+)?)")
DEVICE_HELP = f"must be one of {', '.join(DEVICE_CHOICES)} (N a GPU index)"
AUTOCAST_HELP = f"must be one of {', '.join(AUTOCAST_MODES)}"


def is_device_spec(spec: object) -> TypeGuard[str]:
    return isinstance(spec, str) and _DEVICE.fullmatch(spec) is not None


def is_autocast_mode(mode: object) -> TypeGuard[str]:
    return isinstance(mode, str) and mode in AUTOCAST_MODES


def check_device_spec(spec: object) -> str:
    """``spec`` if it is one of auto, cpu, cuda, cuda:N; otherwise a MergeflowError saying what is accepted."""
    if not is_device_spec(spec):
        raise MergeflowError(f"device {DEVICE_HELP}, got {spec!r}")
    return spec


def check_autocast_mode(mode: object) -> str:
    """``mode`` if it is none, bf16 or fp16; otherwise a MergeflowError saying what is accepted."""
    if not is_autocast_mode(mode):
        raise MergeflowError(f"autocast {AUTOCAST_HELP}, got {mode!r}")
    return mode
