"""An encoder whose adapted linear layers take per-input expert coefficients (TR-Merging, Twin-Merging, DaWin).

The adapted ``nn.Linear`` modules are swapped for ``MixedLinear``, which computes W x + sum_e c[b, e] s_e B_e (A_e x)
for input b; one forward pass then serves a batch in which every input has its own merged model, and no weight matrix
is ever built per input. Coefficient rows of zeros give the base model; a one-hot row gives one expert.

Grouped serving: when every coefficient row has at most one non-zero entry (K = 1: MAD, the task-known expert, a
top-1 router), the batch is split into the groups of inputs served by the same expert with the same coefficient, and
each group runs through that expert alone: W x + c s_e B_e (A_e x), one low-rank update of one expert per layer (or,
with ``group_update="merged"``, the merged weights W + c s_e B_e A_e), instead of computing every used expert's
update for every token and mixing them per input. The results equal the mixing path's up to float rounding
(tests/lora/test_lora_grouped.py); ``grouped=False`` keeps the mixing path for every batch.

The encoder runs on its ``device`` (under its ``autocast``): inputs and coefficients move there per call and the
features come back on the CPU, so the policies' routing, coefficients and heads stay on the CPU whatever the device.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.lora.bank import FactorBank, LayerFactors
from mergeflow.lora.mixing import mixed_lora_linear
from mergeflow.routing.grouped import grouped_apply
from mergeflow.runtime.device import CPU, autocast_context

GroupUpdate = Literal["low_rank", "merged"]


class _Coefficients:
    """The (B, E) coefficients of the batch in flight, shared by every MixedLinear of one encoder; in grouped
    serving, ``group`` = (expert or None for the base model, coefficient) of the group in flight instead."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None
        self.group: tuple[int | None, float] | None = None
        self.update: GroupUpdate = "low_rank"


def single_expert_groups(coefficients: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int | None, float]]] | None:
    """For (B, E) coefficients with at most one non-zero per row: (group index per input, (expert, coefficient)
    per group; expert None = an all-zero row, the base model), groups in ascending (expert, coefficient) order.
    None when some row mixes two or more experts."""
    nonzero = coefficients != 0
    if coefficients.dim() != 2 or bool((nonzero.sum(dim=1) > 1).any()):
        return None
    expert = torch.where(nonzero.any(dim=1), nonzero.to(torch.int64).argmax(dim=1), torch.full_like(coefficients[:, 0], -1, dtype=torch.int64))
    value = coefficients.gather(1, expert.clamp(min=0).unsqueeze(1)).squeeze(1).to(torch.float64) * (expert >= 0)
    pairs, index = torch.unique(torch.stack([expert.to(torch.float64), value], dim=1), dim=0, return_inverse=True)
    groups = [(None if int(e) < 0 else int(e), float(c)) for e, c in pairs.tolist()]
    return index, groups


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
        if self._coefficients.group is not None:
            return self._single_expert(x, *self._coefficients.group)
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

    def _single_expert(self, x: torch.Tensor, expert: int | None, coefficient: float) -> torch.Tensor:
        """Every input of the batch served by ``coefficient`` x one expert (or by the base model)."""
        if expert is None:
            return torch.nn.functional.linear(x, self.weight, self.bias)
        factor = coefficient * float(self.scaling[expert])
        if self._coefficients.update == "merged":
            merged = torch.addmm(self.weight, self.lora_b[expert], self.lora_a[expert], alpha=factor)
            return torch.nn.functional.linear(x, merged, self.bias)
        down = torch.nn.functional.linear(x, self.lora_a[expert])
        return torch.nn.functional.linear(x, self.weight, self.bias) + torch.nn.functional.linear(down, self.lora_b[expert] * factor)


class MixedEncoder(nn.Module):
    """``encoder`` (copied, never modified) with ``bank``'s layers made mixable; ``base_weights`` optionally replaces
    the encoder's own weights first (Twin-Merging serves around its shared expert, not the pretrained model). The
    copy runs on ``device`` under ``autocast`` (see the module docstring). ``grouped`` serves batches of single-expert
    rows group by group (``group_update``: one low-rank update per layer, or the merged weights), see the module
    docstring."""

    def __init__(self, encoder: nn.Module, bank: FactorBank, base_weights: Mapping[str, torch.Tensor] | None = None, *,
                 device: torch.device = CPU, autocast: str = "none", grouped: bool = True,
                 group_update: GroupUpdate = "low_rank") -> None:
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
        if group_update not in ("low_rank", "merged"):
            raise MergeflowError(f"group_update must be low_rank or merged, got {group_update!r}")
        self.grouped = grouped
        self._coefficients.update = group_update

    @property
    def experts(self) -> int:
        return self.bank.size

    def forward(self, pixels: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """Encode ``pixels`` (B, ...) with input b's model = base + sum_e coefficients[b, e] expert_e (on the CPU)."""
        if coefficients.shape != (pixels.shape[0], self.experts):
            raise MergeflowError(f"coefficients must be (batch {pixels.shape[0]}, experts {self.experts}), got {tuple(coefficients.shape)}")
        groups = single_expert_groups(coefficients) if self.grouped and pixels.shape[0] > 0 else None
        if groups is not None:
            index, members = groups
            return grouped_apply(pixels, index, lambda group, rows: self._encode_group(rows, members[group]))
        self._coefficients.value = coefficients.to(self.device)
        try:
            return self._encode(pixels)
        finally:
            self._coefficients.value = None

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        with autocast_context(self.autocast, self.device):
            features = self.encoder(pixels.to(self.device))
        return features.cpu() if self.autocast == "none" else features.float().cpu()

    def _encode_group(self, pixels: torch.Tensor, group: tuple[int | None, float]) -> torch.Tensor:
        self._coefficients.group = group
        try:
            return self._encode(pixels)
        finally:
            self._coefficients.group = None

    def nbytes(self) -> int:
        """Bytes held: the base weights plus every expert's factors (what the server keeps in memory)."""
        base = sum(t.numel() * t.element_size() for t in self.encoder.state_dict().values())
        return base + self.bank.nbytes()
