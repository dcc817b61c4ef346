"""MoW-Merging (Ye et al., 2025), as the MAD paper describes it: a lightweight gating network, trained on a small
set of unlabelled samples, outputs each input's task probabilities p(x), which serve as merging coefficients on top
of a static rule.

Our reading (the MoW paper itself is not in this repository): the rule's merged model (e.g. Task Arithmetic at its
validation-chosen scale) embeds the input; the gate (Twin-Merging's router MLP, trained with cross-entropy on which
task each calibration input came from, its epoch chosen on validation) maps that embedding to p(x); the last
``sublayers`` attention/MLP sub-layers then take theta_0 + sum_t p_t(x) tau_t per input (the authors apply it to
m = 10 of ViT-B/32's 24), the others keep the rule's weights. Batches run as one ``vmap`` over per-input weights.
The encoder, the weights and the gate run on ``device`` (inputs move there per call, results come back on the CPU).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call, vmap

from mergeflow.dynamic.layers import last_sublayer_keys
from mergeflow.errors import MergeflowError
from mergeflow.lora.twin import TwinRouter
from mergeflow.runtime.device import CPU, autocast_context, to_device


class MixtureOfWeights:
    """The rule's model everywhere, per-input expert mixtures in the dynamic sub-layers, and the gate."""

    def __init__(self, encoder: nn.Module, base: Mapping[str, torch.Tensor], task_vectors: Mapping[str, Mapping[str, torch.Tensor]],
                 rule: Mapping[str, torch.Tensor], gate: TwinRouter, sublayers: int, chunk: int = 64, *,
                 device: torch.device = CPU, autocast: str = "none") -> None:
        if len(task_vectors) < 2:
            raise MergeflowError("MoW-Merging needs at least two task vectors")
        self.encoder = encoder.to(device).eval()
        self.rule = to_device(rule, device)
        self.gate = gate.to(device).eval()
        self.chunk = chunk
        self.device, self.autocast = device, autocast
        keys = [key for key in base if base[key].is_floating_point() and any(key in vector for vector in task_vectors.values())]
        self.dynamic = last_sublayer_keys(keys, sublayers)
        self.base = {key: base[key].to(device) for key in self.dynamic}
        self.deltas = {key: torch.stack([vector[key] if key in vector else torch.zeros_like(base[key]) for vector in task_vectors.values()]).to(device)
                       for key in self.dynamic}
        self.static = {key: value for key, value in self.rule.items() if key not in self.base}

    def task_probabilities(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, T) on the CPU: the gate's softmax over the rule model's features."""
        with autocast_context(self.autocast, self.device):
            features = functional_call(self.encoder, self.rule, (inputs.to(self.device),))
        return self.gate(features.float() if self.autocast != "none" else features).softmax(dim=-1).cpu()

    def features(self, inputs: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        """Each input through its own weights: the rule's, with theta_0 + sum_t p_t tau_t in the dynamic sub-layers
        (on the CPU)."""
        inputs, probabilities = inputs.to(self.device), probabilities.to(self.device)

        def one(weights: dict[str, torch.Tensor], single: torch.Tensor) -> torch.Tensor:
            return functional_call(self.encoder, {**self.static, **weights}, (single[None],))[0]

        outputs = []
        with warnings.catch_warnings():  # torch has no batching rule for fused attention yet: it loops inside (noted in the cost table)
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented the batching rule")
            for first in range(0, len(inputs), self.chunk):
                p = probabilities[first : first + self.chunk]
                weights = {key: self.base[key] + torch.tensordot(p.to(delta.dtype), delta, dims=1) for key, delta in self.deltas.items()}
                with autocast_context(self.autocast, self.device):
                    outputs.append(vmap(one)(weights, inputs[first : first + self.chunk]).cpu())
        return torch.cat(outputs)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.features(inputs, self.task_probabilities(inputs))

    def nbytes(self) -> int:
        """Tensor bytes served: the rule's weights, theta_0 and T task vectors of the dynamic keys, and the gate."""
        tensors = [*self.rule.values(), *self.base.values(), *self.deltas.values(), *self.gate.state_dict().values()]
        return sum(t.numel() * t.element_size() for t in tensors)


def rule_features(encoder: nn.Module, rule: Mapping[str, torch.Tensor], inputs: torch.Tensor, batch_size: int,
                  device: torch.device = CPU, autocast: str = "none") -> torch.Tensor:
    """The rule model's features of ``inputs`` (what the gate is trained on and sees when serving), on the CPU; the
    encoder (moved to ``device``) runs each batch there."""
    encoder.to(device)
    weights = to_device(rule, device)
    with torch.no_grad(), autocast_context(autocast, device):
        batches = [functional_call(encoder, weights, (inputs[i : i + batch_size].to(device),)) for i in range(0, len(inputs), batch_size)]
    return torch.cat([batch.cpu() if autocast == "none" else batch.float().cpu() for batch in batches])
