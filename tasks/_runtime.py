"""The device and autocast of a model-running stage (params.yaml ``runtime:``), resolved once at its start and logged.

Kept apart from tasks/_stage.py, which every stage imports, so stages that run no model neither import torch for it
nor depend on src/mergeflow/runtime/device.py.
"""

from __future__ import annotations

import torch

from mergeflow.params import Params
from mergeflow.runtime.device import resolve_autocast, resolve_device


def stage_runtime(params: Params) -> tuple[torch.device, str]:
    """(device, autocast mode) from ``runtime.device`` and ``runtime.autocast``; a MergeflowError (the stage exits 2
    before touching a file) for a GPU that is not visible or fp16 autocast off CUDA."""
    device = resolve_device(params.runtime.device)
    autocast = resolve_autocast(params.runtime.autocast, device)
    print(f"[mergeflow] running on {device}" + ("" if autocast == "none" else f" with {autocast} autocast"), flush=True)
    return device, autocast
