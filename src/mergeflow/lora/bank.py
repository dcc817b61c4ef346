"""Experts as low-rank factors per linear layer: the common currency of every per-input mixing method.

LoRA experts are already factors (B_e A_e with peft's scaling alpha/r); Twin-Merging's exclusive vectors become factors
after their truncated SVD (U_k S_k, V_k^T with scaling 1). Stacking them per layer lets one batched einsum serve any
per-input combination (``lora.mixing.mixed_lora_linear``) instead of building a weight matrix per input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from mergeflow.errors import MergeflowError


@dataclass(frozen=True)
class LayerFactors:
    """One linear layer's experts: a (E, r, in), b (E, out, r), scaling (E,); expert e's delta = scaling[e] b[e] a[e]."""

    a: torch.Tensor
    b: torch.Tensor
    scaling: torch.Tensor

    def delta(self, coefficients: torch.Tensor) -> torch.Tensor:
        """sum_e coefficients[e] * scaling[e] * b[e] @ a[e]: the layer's merged weight change for one coefficient row."""
        weights = (coefficients.to(self.b.dtype) * self.scaling).reshape(-1, 1, 1)
        return torch.einsum("eor,eri->oi", self.b * weights, self.a)


@dataclass(frozen=True)
class FactorBank:
    """Per-layer stacked factors of E experts; ``layers`` maps a module name (``transformer.resblocks.0.mlp.c_fc``)
    to its factors, in the experts' order ``names``."""

    names: tuple[str, ...]
    layers: dict[str, LayerFactors]

    @property
    def size(self) -> int:
        return len(self.names)

    def deltas(self, coefficients: torch.Tensor) -> dict[str, torch.Tensor]:
        """{``layer.weight``: merged change} for one row of E coefficients (what a static merge adds to W0)."""
        if coefficients.shape != (self.size,):
            raise MergeflowError(f"need {self.size} coefficients (one per expert), got shape {tuple(coefficients.shape)}")
        return {f"{name}.weight": factors.delta(coefficients) for name, factors in self.layers.items()}

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for f in self.layers.values() for t in (f.a, f.b, f.scaling))


def stack_factors(names: Sequence[str], experts: Sequence[Mapping[str, tuple[torch.Tensor, torch.Tensor]]],
                  scalings: Sequence[float]) -> FactorBank:
    """Stack per-expert ``{layer: (A (r, in), B (out, r))}`` (``adapters.lora_factors``) into one bank.

    Every expert must adapt the same layers with the same shapes: mixing experts of different architectures or LoRA
    ranks is a configuration error, reported with the first layer that differs.
    """
    if not experts or len(experts) != len(names) or len(scalings) != len(names):
        raise MergeflowError(f"need one factor set and one scaling per expert: {len(names)} names, {len(experts)} factor sets, {len(scalings)} scalings")
    layers = sorted(experts[0])
    layer_factors: dict[str, LayerFactors] = {}
    for index, factors in enumerate(experts):
        if sorted(factors) != layers:
            missing = sorted(set(layers) ^ set(factors))
            raise MergeflowError(f"expert {names[index]!r} adapts other layers than {names[0]!r} (differ at {missing[:3]}): train all experts with the same LoRA targets")
    for layer in layers:
        shapes = {(tuple(f[layer][0].shape), tuple(f[layer][1].shape)) for f in experts}
        if len(shapes) != 1:
            raise MergeflowError(f"layer {layer!r}: experts have different factor shapes {sorted(shapes)}: train all experts with the same LoRA rank")
        a = torch.stack([f[layer][0] for f in experts]).float()
        b = torch.stack([f[layer][1] for f in experts]).float()
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise MergeflowError(f"layer {layer!r}: an expert has NaN or infinite LoRA weights; retrain it")
        layer_factors[layer] = LayerFactors(a, b, torch.tensor([float(s) for s in scalings]))
    return FactorBank(tuple(names), layer_factors)
