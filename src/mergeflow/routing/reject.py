"""The reject option: refuse to route inputs whose minimum router distance says they belong to no known task.

Two thresholds. ``calibrate_threshold`` takes an empirical quantile of held-in minimum distances and works for any
router (Mahalanobis, cosine, k-NN), with no distributional assumption; it needs held-in samples not used to fit the
router, or the quantile is optimistic. ``chi2_threshold`` needs no data but assumes the features of a task really are
Gaussian with the fitted covariance, so the squared Mahalanobis distance is chi-square with D degrees of freedom; it
only applies to the Gaussian routers and is badly off when N < D makes the fitted covariance mostly eps.
"""

from __future__ import annotations

import math

import torch

from mergeflow.declarations.common import check_number
from mergeflow.errors import MergeflowError


def _check_quantile(quantile: float) -> float:
    quantile = check_number("quantile", quantile)
    if not 0 < quantile < 1:
        raise MergeflowError(f"quantile must be strictly between 0 and 1, got {quantile!r} (e.g. 0.99)")
    return quantile


def calibrate_threshold(min_distances: torch.Tensor, quantile: float = 0.99) -> float:
    """The ``quantile`` of held-in minimum distances (linear interpolation): that fraction of seen-task inputs pass."""
    quantile = _check_quantile(quantile)
    if min_distances.dim() != 1 or min_distances.numel() == 0:
        raise MergeflowError(f"min_distances must be a non-empty (N,) tensor, got {tuple(min_distances.shape)}")
    values = min_distances.detach().to(torch.float64)
    if not torch.isfinite(values).all():
        raise MergeflowError("min_distances contain NaN or Inf: check the held-in features")
    return float(torch.quantile(values, quantile))


def chi2_threshold(dim: int, quantile: float) -> float:
    """sqrt of the chi-square ``quantile`` with ``dim`` degrees of freedom: a Mahalanobis-distance (not squared) cut."""
    quantile = _check_quantile(quantile)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise MergeflowError(f"dim must be a positive integer (the feature dimension), got {dim!r}")
    from scipy.stats import chi2  # scipy.stats costs about a second to import; every routing stage imports this module

    return math.sqrt(float(chi2.ppf(quantile, dim)))


def accept(min_distances: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N,) bool: True where the input is close enough to a known task to be routed (NaN is never accepted)."""
    return min_distances <= check_number("threshold", threshold)
