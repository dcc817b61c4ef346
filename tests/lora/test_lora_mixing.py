"""Per-input LoRA mixing equals materialising each input's merged weights; TR-Merging's router limits hold."""

from __future__ import annotations

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.lora.mixing import mixed_lora_linear
from mergeflow.lora.tr_router import mean_cosine_scores, routing_weights, top_k


def _experts(generator: torch.Generator, experts: int = 3, rank: int = 2, width: int = 5, out: int = 4):  # type: ignore[no-untyped-def]
    weight, bias = torch.randn(out, width, generator=generator), torch.randn(out, generator=generator)
    lora_a = torch.randn(experts, rank, width, generator=generator)
    lora_b = torch.randn(experts, out, rank, generator=generator)
    return weight, bias, lora_a, lora_b, torch.tensor([0.5, 1.0, 2.0][:experts])


def test_per_input_mixing_equals_materialised_weights() -> None:
    generator = torch.Generator().manual_seed(0)
    weight, bias, lora_a, lora_b, scaling = _experts(generator)
    x = torch.randn(6, 7, 5, generator=generator, dtype=torch.float64)
    coefficients = torch.rand(6, 3, generator=generator, dtype=torch.float64)
    mixed = mixed_lora_linear(x, weight.double(), bias.double(), lora_a.double(), lora_b.double(), scaling.double(), coefficients)
    for b in range(6):
        merged = weight.double() + sum(coefficients[b, e] * scaling[e] * lora_b[e].double() @ lora_a[e].double() for e in range(3))
        assert torch.allclose(mixed[b], x[b] @ merged.T + bias.double(), atol=1e-12)


def test_one_hot_coefficients_give_the_single_expert() -> None:
    """K = 1 with oracle routing is the individual LoRA expert (W0 + s_e B_e A_e)."""
    generator = torch.Generator().manual_seed(1)
    weight, bias, lora_a, lora_b, scaling = _experts(generator)
    x = torch.randn(3, 5, generator=generator)
    oracle = top_k(torch.eye(3), 1)  # input b routed to expert b
    mixed = mixed_lora_linear(x, weight, bias, lora_a, lora_b, scaling, oracle)
    for e in range(3):
        expert = weight + scaling[e] * lora_b[e] @ lora_a[e]
        assert torch.allclose(mixed[e], x[e] @ expert.T + bias, atol=1e-5)


def test_small_temperature_routes_hard_and_top_k_keeps_k() -> None:
    generator = torch.Generator().manual_seed(2)
    samples = [torch.randn(8, 6, generator=generator) + 4 * torch.eye(6)[t] for t in range(3)]
    queries = torch.stack([samples[t][0] for t in (2, 0, 1)])
    scores = mean_cosine_scores(queries, samples)
    assert scores.argmax(dim=1).tolist() == [2, 0, 1]
    for form in ("written", "scaled"):
        hard = routing_weights(scores, 1e-6, form)
        assert torch.equal(hard, torch.nn.functional.one_hot(scores.argmax(dim=1), 3).to(hard.dtype))
    soft = routing_weights(scores, 1.0, "scaled")
    kept = top_k(soft, 2)
    assert ((kept > 0).sum(dim=1) == 2).all() and torch.allclose(top_k(soft, 2, renormalize=True).sum(dim=1), torch.ones(3, dtype=soft.dtype))
    assert torch.equal(top_k(soft, 3), soft)
    with pytest.raises(MergeflowError):
        top_k(soft, 0)
    with pytest.raises(MergeflowError):
        routing_weights(scores, 0.0)
