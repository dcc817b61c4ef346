"""The straight-through mask (docs/methods.md §3(d) toy values) and the entropy objective."""

from __future__ import annotations

import math

import pytest
import torch

from mergeflow.adaptation.entropy import mean_entropy
from mergeflow.adaptation.ste import masked_values, ste_mask
from mergeflow.errors import MergeflowError

LOGITS = [0.1, -0.1, 5.0, -5.0]


def test_ste_toy_values() -> None:
    logits = torch.tensor(LOGITS, requires_grad=True)
    mask = ste_mask(logits, temperature=10.0)
    assert torch.equal(mask, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    mask.sum().backward()
    p = torch.sigmoid(torch.tensor(LOGITS) / 10.0)
    assert torch.allclose(p, torch.tensor([0.5025, 0.4975, 0.6225, 0.3775]), atol=5e-5)
    assert torch.allclose(logits.grad, torch.tensor([0.0250, 0.0250, 0.0235, 0.0235]), atol=5e-5)


def test_masked_values_forward_is_exactly_hard_and_gradient_is_sigmoid() -> None:
    values = torch.tensor([3.7, 1.3, 2.9, 0.6])
    logits = torch.tensor(LOGITS, requires_grad=True)
    masked = masked_values(values, logits, 10.0)
    assert torch.equal(masked, values * torch.tensor([1.0, 0.0, 1.0, 0.0]))
    upstream = torch.tensor([1.0, -2.0, 0.5, 3.0])
    (masked * upstream).sum().backward()
    p = torch.sigmoid(torch.tensor(LOGITS) / 10.0)
    assert torch.allclose(logits.grad, upstream * values * p * (1 - p) / 10.0, rtol=1e-6)


def test_zero_logit_is_pruned_and_bad_temperature_refused() -> None:
    assert ste_mask(torch.zeros(2)).tolist() == [0.0, 0.0]
    with pytest.raises(MergeflowError, match="temperature"):
        ste_mask(torch.zeros(2), temperature=0.0)


def test_mean_entropy() -> None:
    assert torch.allclose(mean_entropy(torch.zeros(3, 5)), torch.tensor(math.log(5)))
    confident = mean_entropy(torch.tensor([[1e4, 0.0, 0.0]]))  # softmax underflows to 0: log_softmax stays finite
    assert torch.isfinite(confident) and confident.abs() < 1e-6
    mixed = torch.tensor([[0.0, 0.0], [1e4, 0.0]])
    assert torch.allclose(mean_entropy(mixed), torch.tensor(math.log(2) / 2))
