"""Bhattacharyya distance against its scalar closed form; identical Gaussians give 0 and the bare prior bound."""

from __future__ import annotations

import math

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.routing.bhattacharyya import bayes_error_bound, bhattacharyya_distance
from mergeflow.routing.gaussian import task_covariances


def test_one_dimensional_closed_form() -> None:
    mu, var = [0.0, 1.5, -2.0], [1.0, 4.0, 0.25]
    distance = bhattacharyya_distance(torch.tensor(mu)[:, None], torch.tensor(var)[:, None, None])
    for s in range(3):
        for t in range(3):
            expected = (mu[s] - mu[t]) ** 2 / (4 * (var[s] + var[t])) + 0.5 * math.log(
                (var[s] + var[t]) / (2 * math.sqrt(var[s] * var[t]))
            )
            assert float(distance[s, t]) == pytest.approx(expected, abs=1e-12)


def test_identical_gaussians_and_symmetry() -> None:
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(20, 6, generator=generator)
    features = [shared, shared.clone(), torch.randn(20, 6, generator=generator) + 2]
    means, covariances = task_covariances(features, eps=1e-3)
    distance = bhattacharyya_distance(means, covariances)
    assert torch.equal(distance, distance.T) and torch.equal(distance.diagonal(), torch.zeros(3, dtype=torch.float64))
    assert float(distance[0, 1]) == pytest.approx(0, abs=1e-10)
    assert float(distance[0, 2]) > 1
    priors = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    bound = bayes_error_bound(distance, priors)
    assert float(bound[0, 1]) == pytest.approx(math.sqrt(0.5 * 0.3), abs=1e-9)
    assert torch.equal(bound.diagonal(), torch.zeros(3, dtype=torch.float64))
    assert float(bayes_error_bound(distance)[0, 1]) == pytest.approx(1 / 3, abs=1e-9)


def test_errors() -> None:
    with pytest.raises(MergeflowError, match="positive definite"):
        bhattacharyya_distance(torch.zeros(2, 2), torch.zeros(2, 2, 2))
    with pytest.raises(MergeflowError, match="summing to 1"):
        bayes_error_bound(torch.zeros(2, 2), torch.tensor([0.5, 0.6]))
