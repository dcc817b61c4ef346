"""Reject thresholds: the empirical quantile passes that fraction of held-in inputs; chi-square matches its table."""

from __future__ import annotations

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.routing.reject import accept, calibrate_threshold, chi2_threshold


def test_empirical_threshold_accepts_the_quantile() -> None:
    distances = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    threshold = calibrate_threshold(distances, 0.9)
    assert float(accept(distances, threshold).double().mean()) == pytest.approx(0.9, abs=0.002)
    assert not bool(accept(torch.tensor([float("nan")]), threshold)[0])


def test_chi2_threshold() -> None:
    assert chi2_threshold(1, 0.95) == pytest.approx(1.959964, abs=1e-5)
    assert chi2_threshold(512, 0.99) > chi2_threshold(512, 0.5)


@pytest.mark.parametrize("quantile", [0.0, 1.0, 1.5, float("nan")])
def test_quantile_must_be_open_unit_interval(quantile: float) -> None:
    with pytest.raises(MergeflowError, match="quantile"):
        calibrate_threshold(torch.ones(3), quantile)
    with pytest.raises(MergeflowError, match="quantile"):
        chi2_threshold(2, quantile)


def test_bad_inputs() -> None:
    with pytest.raises(MergeflowError, match="non-empty"):
        calibrate_threshold(torch.ones(0))
    with pytest.raises(MergeflowError, match="dim"):
        chi2_threshold(0, 0.9)
