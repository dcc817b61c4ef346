"""peft LoRA experts of a Hugging Face causal LM (TR-Merging: Qwen2.5-0.5B-Instruct, rank 8, alpha 32, MLP layers),
read straight from their folders into mergeflow's factor bank, and merged by Task Arithmetic.

A peft adapter folder holds ``adapter_config.json`` and ``adapter_model.safetensors``, keyed
``base_model.model.<module path>.lora_A.weight`` / ``.lora_B.weight`` (no adapter name). The factors already have the
shapes ``lora.bank`` stacks for an ``nn.Linear`` of the base model (A: (r, in), B: (out, r)), so no conversion is
needed beyond dropping peft's ``base_model.model.`` wrapper prefix: an expert's change to ``<module>.weight`` is
ΔW = (alpha / r) B A (alpha / sqrt(r) with rsLoRA). Reading the files directly needs no copy of the base model per
expert and never unpickles; ``PeftModel.from_pretrained(base, folder).merge_and_unload()`` gives the same weights for
one expert at coefficient 1 (tests/real/test_language_peft.py checks it).

Adapter features whose effect is not a plain ΔW on a linear weight (DoRA, per-layer rank/alpha patterns, trained
biases, fully trained ``modules_to_save``, Conv1D ``fan_in_fan_out`` layouts, ...) are refused with the feature named,
rather than merged wrongly.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.lora.adapters import CONFIG_NAME, WEIGHTS_NAME, lora_factors
from mergeflow.lora.bank import FactorBank, stack_factors
from mergeflow.statedict.io import load_tensors

PEFT_PREFIX = "base_model.model."
TA_COEFFICIENT = 0.3  # TR-Merging's Task Arithmetic scale for LoRA experts


@dataclass(frozen=True)
class LoraExpert:
    """One adapter: ``factors`` maps a module path of the base model (``model.layers.0.mlp.up_proj``) to (A, B)."""

    name: str
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    rank: int
    alpha: float
    scaling: float
    base_model: str | None  # the base peft recorded when the adapter was saved (None if not recorded)


def _unsupported(config: dict[str, Any]) -> list[str]:
    """The config's features that make an adapter more than ΔW = scaling B A on linear weights."""
    found = []
    if config.get("peft_type", "LORA") != "LORA":
        found.append(f"peft_type={config.get('peft_type')!r} (only LoRA)")
    for flag in ("use_dora", "fan_in_fan_out", "lora_bias", "use_qalora", "use_bdlora"):
        if config.get(flag):
            found.append(f"{flag}=true")
    for option in ("rank_pattern", "alpha_pattern", "modules_to_save", "layer_replication", "alora_invocation_tokens",
                   "target_parameters", "trainable_token_indices"):
        if config.get(option):
            found.append(f"{option}={config[option]!r}")
    if config.get("bias", "none") != "none":
        found.append(f"bias={config['bias']!r}")
    return found


def read_lora_expert(folder: str | os.PathLike[str], name: str | None = None) -> LoraExpert:
    """An adapter saved by peft's ``save_pretrained``: its config and factors, checked, without the base model."""
    path = Path(folder)
    label = name or path.name
    try:
        config = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        rank, alpha = int(config["r"]), float(config["lora_alpha"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MergeflowError(f"{path / CONFIG_NAME}: not a readable peft LoRA config ({exc})") from exc
    unsupported = _unsupported(config)
    if unsupported:
        raise MergeflowError(f"LoRA expert {label!r}: {', '.join(unsupported)} is not supported: its change is not "
                             "scaling * B A on linear weights, so Task Arithmetic over ΔW would not reproduce the expert")
    if rank < 1:
        raise MergeflowError(f"LoRA expert {label!r}: rank must be >= 1, got {rank}")
    state = load_tensors(path / WEIGHTS_NAME)
    strange = sorted(key for key in state if not key.endswith((".lora_A.weight", ".lora_B.weight")))
    if strange:
        raise MergeflowError(f"LoRA expert {label!r}: {path / WEIGHTS_NAME} has entries that are not LoRA factors: {strange[:3]}")
    unprefixed = sorted(key for key in state if not key.startswith(PEFT_PREFIX))
    if unprefixed:
        raise MergeflowError(f"LoRA expert {label!r}: keys without peft's {PEFT_PREFIX!r} prefix ({unprefixed[:3]}): "
                             "save the adapter with PeftModel.save_pretrained")
    factors = {layer.removeprefix(PEFT_PREFIX): pair for layer, pair in lora_factors(state).items()}
    for layer, (a, b) in factors.items():
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise MergeflowError(f"LoRA expert {label!r}: {layer} has A {tuple(a.shape)} and B {tuple(b.shape)}, "
                                 f"not rank {rank} factors of a linear layer")
    scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    return LoraExpert(label, factors, rank, alpha, scaling, config.get("base_model_name_or_path"))


def lora_bank(experts: Sequence[LoraExpert]) -> FactorBank:
    """The experts stacked per layer (``lora.bank``): every expert must adapt the same layers with the same rank."""
    return stack_factors([e.name for e in experts], [e.factors for e in experts], [e.scaling for e in experts])


def task_arithmetic_lora(model: nn.Module, experts: Sequence[LoraExpert], coefficients: float | Sequence[float] = TA_COEFFICIENT,
                         in_place: bool = False) -> nn.Module:
    """W0 + sum_e c_e (alpha_e / r_e) B_e A_e on every adapted linear weight of ``model`` (the base causal LM).

    One coefficient for all experts (TR-Merging's 0.3) or one each; coefficient 1 and a single expert gives that
    expert's own merged model. The sum is taken in float32 and added to each weight in its own dtype. ``model`` is
    copied unless ``in_place``.
    """
    bank = lora_bank(experts)
    values = [float(coefficients)] * bank.size if isinstance(coefficients, (int, float)) else [float(c) for c in coefficients]
    deltas = bank.deltas(torch.tensor(values))
    merged = model if in_place else copy.deepcopy(model)
    for key, delta in deltas.items():
        layer = key.removesuffix(".weight")
        try:
            module = merged.get_submodule(layer)
        except AttributeError:
            raise MergeflowError(f"LoRA layer {layer!r} is not a module of {type(model).__name__}: the experts were "
                                 f"trained on another architecture (recorded base: {experts[0].base_model!r})") from None
        weight = getattr(module, "weight", None)
        if not isinstance(module, nn.Linear) or weight is None or weight.shape != delta.shape:
            shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None
            raise MergeflowError(f"LoRA layer {layer!r}: the model's {type(module).__name__} weight {shape} does not take "
                                 f"a ΔW of shape {tuple(delta.shape)}: the experts were trained on another model")
        with torch.no_grad():
            weight.copy_((weight.float() + delta.to(weight.device)).to(weight.dtype))
    return merged


def fit_to_encoder(expert: LoraExpert, encoder: nn.Module, spec_rank: int, spec_scaling: float) -> dict[str, torch.Tensor]:
    """A brought adapter as the pipeline's own adapter state of ``encoder`` (keys ``<layer>.lora_A.weight``, relative
    to the encoder, whose module paths are the Hugging Face model's): every adapted layer must be one of the
    encoder's linear layers with matching shapes, and the rank and scaling those of ``lora.adapter``, since the LoRA
    methods stack every task's factors into one bank."""
    if expert.rank != spec_rank or not math.isclose(expert.scaling, spec_scaling, rel_tol=1e-9):
        raise MergeflowError(f"LoRA expert {expert.name!r}: rank {expert.rank}, scaling {expert.scaling:g}; lora.adapter "
                             f"has rank {spec_rank}, scaling {spec_scaling:g}: every task's expert needs the same")
    modules = dict(encoder.named_modules())
    state = {}
    for layer, (a, b) in expert.factors.items():
        module = modules.get(layer)
        if not isinstance(module, nn.Linear):
            raise MergeflowError(f"LoRA expert {expert.name!r}: {layer!r} is not a linear layer of the base model "
                                 f"(found {type(module).__name__ if module is not None else 'nothing'}); was it trained on "
                                 "backbone.pretrained?")
        if a.shape[1] != module.in_features or b.shape[0] != module.out_features:
            raise MergeflowError(f"LoRA expert {expert.name!r}: {layer} factors A {tuple(a.shape)}, B {tuple(b.shape)} do not "
                                 f"fit its ({module.out_features}, {module.in_features}) weight")
        state[f"{layer}.lora_A.weight"], state[f"{layer}.lora_B.weight"] = a.float(), b.float()
    return state
