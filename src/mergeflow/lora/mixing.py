"""Per-input merging of LoRA experts (TR-Merging, docs/methods.md §4): (W0 + sum_e a_e s_e B_e A_e) x computed as
W0 x + sum_e a_e s_e B_e (A_e x), so every input of a batch can have its own expert weights a without building a
weight matrix per input (which costs out x in per input instead of r x (in + out) per expert)."""

from __future__ import annotations

import torch

from mergeflow.errors import MergeflowError


def mixed_lora_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: torch.Tensor,
    coefficients: torch.Tensor,
) -> torch.Tensor:
    """y[b] = x[b] W0^T + bias + sum_e coefficients[b, e] * scaling[e] * (x[b] A_e^T) B_e^T.

    Shapes: x (B, ..., in); weight (out, in); lora_a (E, r, in); lora_b (E, out, r); scaling (E,) (peft's
    alpha / r per expert); coefficients (B, E), one row of expert weights per input (zeros for experts not used).
    """
    experts, rank, width = lora_a.shape
    if weight.dim() != 2 or weight.shape[1] != width or x.shape[-1] != width:
        raise MergeflowError(f"input width {x.shape[-1]}, base weight {tuple(weight.shape)} and LoRA A {tuple(lora_a.shape)} disagree")
    if lora_b.shape != (experts, weight.shape[0], rank) or scaling.shape != (experts,):
        raise MergeflowError(f"LoRA B {tuple(lora_b.shape)} / scaling {tuple(scaling.shape)} do not match {experts} experts of rank {rank}")
    if coefficients.shape != (x.shape[0], experts):
        raise MergeflowError(f"coefficients must be (batch {x.shape[0]}, experts {experts}), got {tuple(coefficients.shape)}")
    base = torch.nn.functional.linear(x, weight, bias)
    down = torch.einsum("b...i,eri->b...er", x, lora_a)  # A_e x for every expert
    mixing = (coefficients * scaling).reshape(x.shape[0], *([1] * (x.dim() - 2)), experts, 1)
    return base + torch.einsum("b...er,eor->b...o", down * mixing, lora_b)
