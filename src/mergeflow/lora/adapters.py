"""LoRA adapters on an open_clip image encoder with peft, and their factors as tensors for per-input mixing.

peft's ``inject_adapter_in_model`` works on any ``nn.Module`` (open_clip is not a transformers model), freezes the
base weights and adds ``lora_A`` / ``lora_B`` to the target linear layers; TR-Merging's vision experts put LoRA in
the MLP layers (``c_fc``, ``c_proj``) with rank 16, alpha 16, dropout 0.1 and frozen biases (docs/methods.md §4).
Adapters are saved as peft saves them: ``adapter_config.json`` + ``adapter_model.safetensors``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from torch import nn

from mergeflow.atomic import atomic_path
from mergeflow.errors import MergeflowError
from mergeflow.statedict.io import load_tensors, save_tensors

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


@dataclass(frozen=True)
class LoraSpec:
    """Rank, alpha, dropout and the module-name suffixes that get adapters (peft's ``target_modules``)."""

    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.1
    targets: tuple[str, ...] = field(default=("c_fc", "c_proj"))

    @property
    def scaling(self) -> float:
        """peft's alpha / r: the factor on B A."""
        return self.alpha / self.rank

    def config(self) -> LoraConfig:
        return LoraConfig(r=self.rank, lora_alpha=self.alpha,  # type: ignore[arg-type]  # peft types it int; a float works
                          lora_dropout=self.dropout, target_modules=list(self.targets), bias="none")


def add_lora(module: nn.Module, spec: LoraSpec) -> nn.Module:
    """Inject adapters in place; afterwards only LoRA parameters require gradients."""
    if spec.rank < 1:
        raise MergeflowError(f"LoRA rank must be >= 1, got {spec.rank}")
    try:
        return inject_adapter_in_model(spec.config(), module)
    except ValueError as exc:
        raise MergeflowError(f"cannot add LoRA to {', '.join(spec.targets)}: {exc}") from exc


def lora_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' tensors, keyed as peft saves them (``...c_fc.lora_A.weight``)."""
    return {key: value.detach().clone() for key, value in get_peft_model_state_dict(module).items()}


def lora_factors(state: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{layer name: (A (r, in), B (out, r))} from an adapter state dict."""
    factors = {}
    for key in state:
        if key.endswith(".lora_A.weight"):
            layer = key.removesuffix(".lora_A.weight")
            if f"{layer}.lora_B.weight" not in state:
                raise MergeflowError(f"adapter has lora_A for {layer!r} but no lora_B: the file is incomplete")
            factors[layer] = (state[key], state[f"{layer}.lora_B.weight"])
    if not factors:
        raise MergeflowError("no LoRA factors in this adapter state (expected keys ending in .lora_A.weight)")
    return factors


def save_adapter(directory: str | os.PathLike[str], module: nn.Module, spec: LoraSpec) -> None:
    """peft's on-disk format: the config as JSON and the adapter weights as safetensors (each written atomically)."""
    write_adapter(directory, lora_state(module), spec)


def write_adapter(directory: str | os.PathLike[str], state: dict[str, torch.Tensor], spec: LoraSpec) -> None:
    """An adapter state (keys ``<layer>.lora_A.weight`` / ``.lora_B.weight`` relative to the encoder) in peft's format."""
    folder = Path(directory)
    save_tensors(folder / WEIGHTS_NAME, {key: value.contiguous() for key, value in state.items()})
    config = spec.config().to_dict()
    config["target_modules"] = sorted(config["target_modules"])
    with atomic_path(folder / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def load_adapter(directory: str | os.PathLike[str], module: nn.Module) -> tuple[nn.Module, LoraSpec]:
    """Inject the saved adapter's LoRA layers into ``module`` and load its weights."""
    folder = Path(directory)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        spec = LoraSpec(int(config["r"]), float(config["lora_alpha"]), float(config["lora_dropout"]), tuple(sorted(config["target_modules"])))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MergeflowError(f"{folder / CONFIG_NAME}: not a readable LoRA adapter config ({exc})") from exc
    module = add_lora(module, spec)
    result = set_peft_model_state_dict(module, load_tensors(folder / WEIGHTS_NAME))
    missing = [key for key in getattr(result, "unexpected_keys", []) if "lora_" in key]
    if missing:
        raise MergeflowError(f"{folder / WEIGHTS_NAME}: adapter keys that match no layer: {missing[:3]}")
    return module, spec
