"""Dense per-input mixing: a linear layer whose weights are W + sum_t c[b, t] dW_t for input b.

The LoRA mixer (``lora.mixing``) never builds a weight per input because its experts are low rank; full task vectors
are dense, so here each input's (out, in) weight is built once per call (one ``einsum`` over the T deltas) and
applied with one batched matmul. For a sequence of n tokens that costs T + n multiply-adds per weight entry, where
the stacked alternative (concatenating c[b, t] x for every t) costs n (T + 1): the former wins once n > 1.
"""

from __future__ import annotations

import torch
from torch import nn

from mergeflow.errors import MergeflowError


def mixed_dense_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, delta_weight: torch.Tensor,
                       delta_bias: torch.Tensor | None, coefficients: torch.Tensor) -> torch.Tensor:
    """y[b] = (W + sum_t c[b, t] dW_t) x[b] + (bias + sum_t c[b, t] db_t), batch first.

    ``x`` (B, ..., in), ``weight`` (out, in), ``delta_weight`` (T, out, in), ``delta_bias`` (T, out), ``coefficients`` (B, T).
    """
    if coefficients.dim() != 2 or coefficients.shape[0] != x.shape[0] or coefficients.shape[1] != delta_weight.shape[0]:
        raise MergeflowError(f"coefficients must be (batch {x.shape[0]}, experts {delta_weight.shape[0]}), got {tuple(coefficients.shape)}")
    coefficients = coefficients.to(x.dtype)
    batch, (rows, columns) = x.shape[0], weight.shape
    # W + c @ dW as one GEMM that accumulates onto W (addmm), and the bias added by the batched GEMM (baddbmm): the
    # separate adds each read and wrote a (B, out, in) tensor: a WEMoE step now takes 0.80x (benchmarks/wemoe_bench.py)
    per_input = torch.addmm(weight.reshape(1, -1), coefficients, delta_weight.reshape(delta_weight.shape[0], -1))
    flat = x.reshape(batch, -1, columns)
    per_input_t = per_input.view(batch, rows, columns).transpose(1, 2)
    if bias is None:
        y = torch.bmm(flat, per_input_t)
    else:
        shift = bias + coefficients @ delta_bias if delta_bias is not None else bias.expand(batch, -1)
        y = torch.baddbmm(shift[:, None, :], flat, per_input_t)
    return y.reshape(*x.shape[:-1], rows)


class Coefficients:
    """The (B, T) coefficients of the batch in flight, shared by the mixed layers of one group (set by whoever routes)."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None


class DenseMixedLinear(nn.Module):
    """``linear`` (its weight is the base W) plus T dense deltas, mixed per input with ``coefficients.value``."""

    delta_weight: torch.Tensor  # buffers (registered in __init__)
    delta_bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear, delta_weight: torch.Tensor, delta_bias: torch.Tensor | None, coefficients: Coefficients) -> None:
        super().__init__()
        if delta_weight.shape[1:] != linear.weight.shape:
            raise MergeflowError(f"task-vector deltas of shape {tuple(delta_weight.shape[1:])} do not fit a {tuple(linear.weight.shape)} layer")
        self.weight = linear.weight
        self.bias = linear.bias
        self.register_buffer("delta_weight", delta_weight.to(linear.weight.dtype), persistent=False)
        self.register_buffer("delta_bias", None if delta_bias is None else delta_bias.to(linear.weight.dtype), persistent=False)
        self.coefficients = coefficients

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.coefficients.value is None:
            raise MergeflowError("a mixed layer ran before its group's coefficients were set (call the model, not the layer)")
        return mixed_dense_linear(x, self.weight, self.bias, self.delta_weight, self.delta_bias, self.coefficients.value)
