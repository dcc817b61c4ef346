"""Per-task Gaussians: MAD's distance matches its formula, identity covariance is nearest-mean, and bad inputs fail."""

from __future__ import annotations

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.routing.gaussian import TaskGaussians, fit_gaussians, mahalanobis, task_covariances


def _features(seed: int, tasks: int, n: int, dim: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, dim, generator=generator) * (1 + t) + 3 * t for t in range(tasks)]


def test_full_distance_matches_explicit_inverse() -> None:
    features = _features(0, tasks=3, n=12, dim=5)
    eps = 1e-3
    gaussians = fit_gaussians(features, eps=eps)
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    got = mahalanobis(gaussians, x)
    assert got.shape == (7, 3) and got.dtype == torch.float64
    for t, f in enumerate(features):
        f = f.double()
        sigma = torch.cov(f.T) + eps * torch.eye(5, dtype=torch.float64)
        diff = x.double() - f.mean(dim=0)
        expected = torch.sqrt(torch.einsum("bi,ij,bj->b", diff, torch.linalg.inv(sigma), diff))
        torch.testing.assert_close(got[:, t], expected, rtol=1e-10, atol=1e-10)


def test_identity_is_euclidean_distance_to_the_means() -> None:
    features = _features(2, tasks=4, n=10, dim=6)
    gaussians = fit_gaussians(features, covariance="identity")
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    means = torch.stack([f.double().mean(dim=0) for f in features])
    expected = torch.cdist(x, means, compute_mode="donot_use_mm_for_euclid_dist")
    torch.testing.assert_close(mahalanobis(gaussians, x), expected, rtol=0, atol=1e-12)


def test_full_with_identity_covariance_is_scaled_euclidean() -> None:
    """Features whose sample covariance is exactly I: MAD = Euclidean / sqrt(1 + eps)."""
    dim, eps = 4, 1e-2
    eye = torch.eye(dim, dtype=torch.float64)
    basis = torch.cat([eye, -eye]) * (dim - 0.5) ** 0.5  # mean 0, covariance (2 (D - 1/2) / (2D - 1)) I = I
    features = [basis + 5 * t for t in range(3)]
    x = torch.randn(6, dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    full = mahalanobis(fit_gaussians(features, eps=eps), x)
    euclid = mahalanobis(fit_gaussians(features, covariance="identity"), x)
    torch.testing.assert_close(full, euclid / (1 + eps) ** 0.5, rtol=1e-10, atol=1e-12)


def test_pooled_differs_from_full_when_task_shapes_differ() -> None:
    generator = torch.Generator().manual_seed(5)
    wide_x = torch.randn(200, 2, generator=generator) * torch.tensor([5.0, 0.2])
    wide_y = torch.randn(200, 2, generator=generator) * torch.tensor([0.2, 5.0]) + 1
    x = torch.tensor([[4.0, 0.0]])
    full = mahalanobis(fit_gaussians([wide_x, wide_y]), x)
    pooled = mahalanobis(fit_gaussians([wide_x, wide_y], covariance="pooled"), x)
    assert int(full.argmin()) == 0  # along task 0's long axis
    assert not torch.allclose(full, pooled, rtol=1e-2)
    assert fit_gaussians([wide_x, wide_y], covariance="pooled").whiteners.shape == (1, 2, 2)


def test_diagonal_ignores_correlation() -> None:
    features = _features(6, tasks=2, n=20, dim=3)
    eps = 1e-4
    gaussians = fit_gaussians(features, eps=eps, covariance="diagonal")
    expected = torch.stack([f.double().var(dim=0) + eps for f in features]).rsqrt()
    torch.testing.assert_close(gaussians.whiteners, expected)


def test_fewer_samples_than_dimensions_is_regularised() -> None:
    features = _features(7, tasks=2, n=8, dim=32)
    for covariance in ("full", "pooled", "diagonal"):
        distances = mahalanobis(fit_gaussians(features, covariance=covariance), features[0][:3])
        assert torch.isfinite(distances).all()


def test_float32_in_float64_out_and_tensor_round_trip() -> None:
    gaussians = fit_gaussians(_features(8, tasks=2, n=6, dim=3))
    assert gaussians.means.dtype == gaussians.whiteners.dtype == torch.float64
    again = TaskGaussians.from_tensors(gaussians.to_tensors(), "full")
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(9))
    assert torch.equal(mahalanobis(gaussians, x), mahalanobis(again, x))


@pytest.mark.parametrize(
    ("features", "kwargs", "message"),
    [
        ([torch.zeros(1, 4), torch.randn(3, 4)], {}, "at least 2"),
        ([torch.randn(3, 4), torch.randn(3, 5)], {}, "feature dimension"),
        ([], {}, "no calibration features"),
        ([torch.tensor([[0.0, float("nan")], [1.0, 2.0]])], {}, "NaN"),
        ([torch.randn(3, 4)], {"eps": 0.0}, "eps must be > 0"),
        ([torch.randn(3, 4)], {"covariance": "tied"}, "covariance must be one of"),
        # covariance 4e18 * [[1, 1], [1, 1]]: eps = 1e-4 is lost in round-off and the second pivot is exactly 0
        ([torch.tensor([[1e9, 1e9], [-1e9, -1e9], [3e9, 3e9]])], {}, "raise route.eps"),
    ],
)
def test_errors(features: list[torch.Tensor], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(MergeflowError, match=message):
        fit_gaussians(features, **kwargs)  # type: ignore[arg-type]


def test_one_sample_is_fine_for_identity_and_shared_covariances_match() -> None:
    assert fit_gaussians([torch.ones(1, 2)], covariance="identity").means.shape == (1, 2)
    features = _features(10, tasks=2, n=5, dim=3)
    means, covariances = task_covariances(features, eps=1e-4)
    assert means.shape == (2, 3) and covariances.shape == (2, 3, 3)
    torch.testing.assert_close(covariances[1], torch.cov(features[1].double().T) + 1e-4 * torch.eye(3).double())
