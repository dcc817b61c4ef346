"""An encoder whose adapted linear layers take per-input expert coefficients (TR-Merging, Twin-Merging, DaWin).

The adapted ``nn.Linear`` modules are swapped for ``MixedLinear``, which computes W x + sum_e c[b, e] s_e B_e (A_e x)
for input b; one forward pass then serves a batch in which every input has its own merged model, and no weight matrix
is ever built per input. Coefficient rows of zeros give the base model; a one-hot row gives one expert.

The encoder runs on its ``device`` (under its ``autocast``): inputs and coefficients move there per call and the
features come back on the CPU, so the policies' routing, coefficients and heads stay on the CPU whatever the device.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.lora.bank import FactorBank, LayerFactors
from mergeflow.lora.mixing import mixed_lora_linear
from mergeflow.runtime.device import CPU, autocast_context


class _Coefficients:
    """The (B, E) coefficients of the batch in flight, shared by every MixedLinear of one encoder."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None


class MixedLinear(nn.Module):
    """A linear layer plus E experts' factors, mixed per input with the shared coefficients."""

    lora_a: torch.Tensor  # buffers (registered in __init__)
    lora_b: torch.Tensor
    scaling: torch.Tensor

    def __init__(self, linear: nn.Linear, factors: LayerFactors, coefficients: _Coefficients) -> None:
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.register_buffer("lora_a", factors.a.to(linear.weight.dtype), persistent=False)
        self.register_buffer("lora_b", factors.b.to(linear.weight.dtype), persistent=False)
        self.register_buffer("scaling", factors.scaling.to(linear.weight.dtype), persistent=False)
        self._coefficients = coefficients

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = self._coefficients.value
        if coefficients is None:
            raise MergeflowError("MixedLinear called outside MixedEncoder.forward: pass coefficients through the encoder")
        used = (coefficients != 0).any(dim=0).nonzero().flatten()
        if used.numel() == 0:  # the base model (TR's embedding pass, Twin's shared expert): no expert to mix
            return torch.nn.functional.linear(x, self.weight, self.bias)
        if used.numel() < coefficients.shape[1]:  # top-K / one-hot batches: only the experts some input uses
            return mixed_lora_linear(x, self.weight, self.bias, self.lora_a[used], self.lora_b[used], self.scaling[used],
                                     coefficients[:, used].to(x.dtype))
        return mixed_lora_linear(x, self.weight, self.bias, self.lora_a, self.lora_b, self.scaling, coefficients.to(x.dtype))


class MixedEncoder(nn.Module):
    """``encoder`` (copied, never modified) with ``bank``'s layers made mixable; ``base_weights`` optionally replaces
    the encoder's own weights first (Twin-Merging serves around its shared expert, not the pretrained model). The
    copy runs on ``device`` under ``autocast`` (see the module docstring)."""

    def __init__(self, encoder: nn.Module, bank: FactorBank, base_weights: Mapping[str, torch.Tensor] | None = None, *,
                 device: torch.device = CPU, autocast: str = "none") -> None:
        super().__init__()
        self.encoder = copy.deepcopy(encoder).eval()
        if base_weights is not None:
            self.encoder.load_state_dict(dict(base_weights), strict=True)
        self.bank = bank
        self._coefficients = _Coefficients()
        modules = dict(self.encoder.named_modules())
        for name, factors in bank.layers.items():
            linear = modules.get(name)
            if not isinstance(linear, nn.Linear):
                raise MergeflowError(f"the experts adapt {name!r}, which is not a linear layer of this encoder: were they trained on another backbone?")
            if factors.a.shape[2] != linear.in_features or factors.b.shape[1] != linear.out_features:
                raise MergeflowError(f"{name!r}: expert factors {tuple(factors.b.shape[1:])}x{tuple(factors.a.shape[1:])} do not fit a {linear.out_features}x{linear.in_features} layer")
            parent_name, _, child = name.rpartition(".")
            setattr(modules[parent_name] if parent_name else self.encoder, child, MixedLinear(linear, factors, self._coefficients))
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        self.encoder.to(device)
        self.device, self.autocast = device, autocast

    @property
    def experts(self) -> int:
        return self.bank.size

    def forward(self, pixels: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """Encode ``pixels`` (B, ...) with input b's model = base + sum_e coefficients[b, e] expert_e (on the CPU)."""
        if coefficients.shape != (pixels.shape[0], self.experts):
            raise MergeflowError(f"coefficients must be (batch {pixels.shape[0]}, experts {self.experts}), got {tuple(coefficients.shape)}")
        self._coefficients.value = coefficients.to(self.device)
        try:
            with autocast_context(self.autocast, self.device):
                features = self.encoder(pixels.to(self.device))
            return features.cpu() if self.autocast == "none" else features.float().cpu()
        finally:
            self._coefficients.value = None

    def nbytes(self) -> int:
        """Bytes held: the base weights plus every expert's factors (what the server keeps in memory)."""
        base = sum(t.numel() * t.element_size() for t in self.encoder.state_dict().values())
        return base + self.bank.nbytes()
