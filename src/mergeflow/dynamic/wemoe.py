"""WEMoE (Tang et al., ICML 2024, "Merging Multi-Task Models via Weight-Ensembling Mixture of Experts").

Every weight outside the transformer MLPs is Task Arithmetic's, theta_0 + lambda_0 sum_t tau_t. Each MLP is
"upscaled": its weights are the *pretrained* MLP's plus the tasks' MLP task vectors, mixed per input by a router,

    W(x) = W_0 + sum_t r_t(x) tau_t[W],   r(x) = mean over tokens of gate(h),

where h is the hidden state entering that MLP and the gate is a small ReLU MLP (0, 1 or 2 hidden layers; the last
layer's weights start near 0 and its bias at lambda_0, so step 0 is Task Arithmetic at lambda_0). Only the gates are
learned, by entropy minimisation on unlabelled test batches of every task (``dynamic.training``). Each input's
coefficients are its own (the authors' per-sample mode; their ``batch_reduce`` would share one over a batch).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from mergeflow.dynamic.layers import mlp_linears
from mergeflow.dynamic.mixing import Coefficients, DenseMixedLinear
from mergeflow.errors import MergeflowError

GATE_INIT_STD = 0.01


class RouterGate(nn.Module):
    """hidden (B, n, d) -> (B, T) routing weights: ``hidden_layers`` ReLU layers of width d, then Linear(d, T) whose
    bias starts at ``init_lambda``; with 0 hidden layers the weights are input-independent parameters."""

    def __init__(self, width: int, tasks: int, hidden_layers: int, init_lambda: float, generator: torch.Generator) -> None:
        super().__init__()
        if hidden_layers not in (0, 1, 2):
            raise MergeflowError(f"router_layers must be 0, 1 or 2, got {hidden_layers}")
        self.constant = nn.Parameter(torch.full((tasks,), float(init_lambda))) if hidden_layers == 0 else None
        layers: list[nn.Module] = []
        for _ in range(hidden_layers - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
        if hidden_layers:
            layers.append(nn.Linear(width, tasks))
        self.layers = nn.Sequential(*layers)
        with torch.no_grad():
            for layer in self.layers:
                if isinstance(layer, nn.Linear):
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * GATE_INIT_STD)
                    layer.bias.zero_()
            if hidden_layers:
                last = self.layers[-1]
                assert isinstance(last, nn.Linear)
                last.bias.fill_(float(init_lambda))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.constant is not None:
            return self.constant.expand(hidden.shape[0], -1)
        weights = self.layers(hidden)
        return weights.mean(dim=1) if weights.dim() == 3 else weights


class _GatedMixedLinear(DenseMixedLinear):
    """An MLP's first linear layer: it routes its own input, then mixes; the MLP's second layer reuses the weights."""

    def __init__(self, linear: nn.Linear, delta_weight: torch.Tensor, delta_bias: torch.Tensor | None,
                 coefficients: Coefficients, gate: RouterGate) -> None:
        super().__init__(linear, delta_weight, delta_bias, coefficients)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.coefficients.value = self.gate(x)
        return super().forward(x)


def _stacked(task_vectors: Mapping[str, Mapping[str, torch.Tensor]], key: str, like: torch.Tensor) -> torch.Tensor:
    return torch.stack([vector[key] if key in vector else torch.zeros_like(like) for vector in task_vectors.values()])


class WeightEnsemblingEncoder(nn.Module):
    """``encoder`` (copied) as WEMoE: Task Arithmetic at ``init_lambda`` outside the MLPs, routed MLPs inside."""

    def __init__(self, encoder: nn.Module, base: Mapping[str, torch.Tensor], task_vectors: Mapping[str, Mapping[str, torch.Tensor]],
                 *, init_lambda: float, router_layers: int, generator: torch.Generator) -> None:
        super().__init__()
        if len(task_vectors) < 2:
            raise MergeflowError("WEMoE needs at least two task vectors to route between")
        self.encoder = copy.deepcopy(encoder).eval()
        pairs = mlp_linears(self.encoder)
        mlp_keys = {f"{name}.{part}" for pair in pairs for name in pair for part in ("weight", "bias")}
        merged = {}
        for key, value in base.items():
            if key in mlp_keys or not value.is_floating_point():
                merged[key] = value
            else:
                merged[key] = value + init_lambda * sum(vector[key] for vector in task_vectors.values() if key in vector)
        missing, unexpected = self.encoder.load_state_dict(merged, strict=False)
        if unexpected or missing:
            raise MergeflowError(f"the base weights do not fit this encoder (missing {missing[:3]}, unexpected {unexpected[:3]})")
        modules = dict(self.encoder.named_modules())
        self.gates = nn.ModuleList()
        for first, second in pairs:
            coefficients = Coefficients()
            width = modules[first].in_features
            gate = RouterGate(width, len(task_vectors), router_layers, init_lambda, generator)
            self.gates.append(gate)
            for name in (first, second):
                linear = modules[name]
                assert isinstance(linear, nn.Linear)
                weights = _stacked(task_vectors, f"{name}.weight", linear.weight)
                biases = None if linear.bias is None else _stacked(task_vectors, f"{name}.bias", linear.bias)
                layer = (_GatedMixedLinear(linear, weights, biases, coefficients, gate) if name == first
                         else DenseMixedLinear(linear, weights, biases, coefficients))
                parent, _, child = name.rpartition(".")
                setattr(modules[parent], child, layer)
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        for parameter in self.gates.parameters():
            parameter.requires_grad_(True)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs)

    def learned(self) -> dict[str, torch.Tensor]:
        """What training changed: the gates' tensors (load them back with ``load_learned``)."""
        return {f"gates.{key}": value.detach().clone() for key, value in self.gates.state_dict().items()}

    def load_learned(self, state: Mapping[str, torch.Tensor]) -> None:
        self.gates.load_state_dict({key.removeprefix("gates."): value for key, value in state.items()}, strict=True)

    def nbytes(self) -> int:
        """Tensor bytes served: the encoder's weights and gates (parameters) and every MLP's T task vectors (buffers)."""
        return sum(t.numel() * t.element_size() for t in (*self.encoder.parameters(), *self.encoder.buffers()))
