"""Pairwise Bhattacharyya distances between the task Gaussians and the Bayes-error bound they imply (MAD Eq. 7,
Theorem 1): a diagnostic of which tasks a Gaussian router can tell apart, not used for routing itself.

Fit the inputs with :func:`mergeflow.routing.gaussian.task_covariances` so the diagnostic sees the router's
Gaussians. Everything is float64; log-determinants come from Cholesky factors, quadratic forms from triangular
solves, never from det() or an explicit inverse (D = 512 determinants under/overflow).
"""

from __future__ import annotations

import torch

from mergeflow.errors import MergeflowError


def _cholesky(covariances: torch.Tensor, what: str) -> torch.Tensor:
    factor, info = torch.linalg.cholesky_ex(covariances)
    if bool((info > 0).any()):
        raise MergeflowError(f"{what} is not positive definite: fit the covariances with a larger eps")
    return factor


def _log_det(factor: torch.Tensor) -> torch.Tensor:
    return 2 * torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(dim=-1)


def bhattacharyya_distance(means: torch.Tensor, covariances: torch.Tensor) -> torch.Tensor:
    """(T, T) float64, B = 1/8 d^T S^{-1} d + 1/2 ln(det S / sqrt(det S1 det S2)) with S = (S1 + S2) / 2.

    Exactly symmetric with a zero diagonal (only s < t is computed); clamped at 0 against round-off.
    One batched Cholesky per row keeps memory at T*D^2 instead of T^2*D^2.
    """
    if means.dim() != 2 or covariances.shape != (means.shape[0], means.shape[1], means.shape[1]):
        raise MergeflowError(
            f"need means (T, D) and covariances (T, D, D), got {tuple(means.shape)} and {tuple(covariances.shape)}"
        )
    means, covariances = means.detach().to(torch.float64), covariances.detach().to(torch.float64)
    if not (torch.isfinite(means).all() and torch.isfinite(covariances).all()):
        raise MergeflowError("means or covariances contain NaN or Inf: check the calibration features")
    log_dets = _log_det(_cholesky(covariances, "a task covariance"))
    tasks = means.shape[0]
    distance = torch.zeros(tasks, tasks, dtype=torch.float64, device=means.device)
    for s in range(tasks - 1):
        others = slice(s + 1, tasks)
        factor = _cholesky((covariances[s] + covariances[others]) / 2, "an averaged covariance")
        diff = (means[others] - means[s]).unsqueeze(-1)
        solved = torch.linalg.solve_triangular(factor, diff, upper=False).squeeze(-1)
        row = solved.square().sum(dim=-1) / 8 + (_log_det(factor) - (log_dets[s] + log_dets[others]) / 2) / 2
        distance[s, others] = row.clamp(min=0)
    return distance + distance.T


def bayes_error_bound(distance: torch.Tensor, priors: torch.Tensor | None = None) -> torch.Tensor:
    """(T, T) float64 upper bound sqrt(p_t p_s) exp(-B(t, s)) on the pairwise Bayes error; uniform priors by default.

    The diagonal is 0: a task cannot be confused with itself.
    """
    if distance.dim() != 2 or distance.shape[0] != distance.shape[1]:
        raise MergeflowError(f"distance must be a square (T, T) matrix, got {tuple(distance.shape)}")
    tasks = distance.shape[0]
    if priors is None:
        priors = torch.full((tasks,), 1 / tasks, dtype=torch.float64, device=distance.device)
    priors = priors.detach().to(device=distance.device, dtype=torch.float64)
    if priors.shape != (tasks,) or not bool((priors >= 0).all()) or abs(float(priors.sum()) - 1) > 1e-6:
        raise MergeflowError(f"priors must be {tasks} non-negative numbers summing to 1, got {priors.tolist()}")
    bound = torch.sqrt(torch.outer(priors, priors)) * torch.exp(-distance.to(torch.float64))
    return bound.fill_diagonal_(0)
