"""Per-task Gaussians over calibration features, stored as whitening factors so a Mahalanobis distance is a norm.

MAD (docs/methods.md §2) fits one mean and covariance per task and routes an input to the task with the smallest
Mahalanobis distance. Everything is computed in float64: covariances of N < D samples are rank-deficient and only
the eps ridge keeps them invertible, so float32 round-off would dominate the small eigenvalues. The fitted tensors
and every distance are float64 whatever the input dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from mergeflow.declarations.common import check_choice, check_number
from mergeflow.errors import MergeflowError

COVARIANCES = ("full", "pooled", "diagonal", "identity")


def check_features(
    features: Sequence[torch.Tensor], min_samples: int, needs: str = "the covariance"
) -> list[torch.Tensor]:
    """Every task's (N_t, D) features as float64, after refusing what would make a fit silently wrong."""
    if len(features) == 0:
        raise MergeflowError("no calibration features: pass one (N, D) tensor per task")
    checked = []
    for t, x in enumerate(features):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise MergeflowError(f"features of task {t} must be a 2-D (N, D) tensor, got {shape}")
        if x.shape[1] != features[0].shape[1]:
            raise MergeflowError(
                f"task {t} has feature dimension {x.shape[1]} but task 0 has {features[0].shape[1]}: "
                "extract every task's features with the same model"
            )
        if x.shape[0] < min_samples:
            raise MergeflowError(
                f"task {t} has N={x.shape[0]} calibration samples; {needs} needs at least {min_samples}"
                " — raise route.samples"
            )
        x = x.detach().to(torch.float64)
        if not torch.isfinite(x).all():
            raise MergeflowError(f"features of task {t} contain NaN or Inf: check the feature extractor")
        checked.append(x)
    return checked


def _centred(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(dim=0)
    return mean, x - mean


def _ridge(covariance: torch.Tensor, eps: float) -> torch.Tensor:
    return covariance + eps * torch.eye(covariance.shape[-1], dtype=covariance.dtype, device=covariance.device)


def _check_eps(eps: float) -> float:
    eps = check_number("eps", eps)
    if eps <= 0:
        raise MergeflowError(f"eps must be > 0 (it keeps N < D covariances invertible), got {eps!r}; try 1e-4")
    return eps


def task_covariances(features: Sequence[torch.Tensor], eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task means (T, D) and unbiased covariances + eps*I (T, D, D), float64 — MAD's Eq. 2-3.

    Shared by the full-covariance router and the Bhattacharyya diagnostics so both see the same Gaussians.
    """
    eps = _check_eps(eps)
    means, covariances = [], []
    for x in check_features(features, min_samples=2):
        mean, centred = _centred(x)
        means.append(mean)
        covariances.append(_ridge(centred.T @ centred / (x.shape[0] - 1), eps))
    return torch.stack(means), torch.stack(covariances)


def _pooled_covariance(features: list[torch.Tensor], eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and one shared covariance: the within-task scatter summed over tasks / (sum N_t - T) + eps*I (LDA)."""
    means: list[torch.Tensor] = []
    scatter: torch.Tensor | int = 0
    for x in features:
        mean, centred = _centred(x)
        means.append(mean)
        scatter = scatter + centred.T @ centred
    if isinstance(scatter, int):  # check_features refuses an empty list before this
        raise MergeflowError("no calibration features: pass one (N, D) tensor per task")
    dof = sum(x.shape[0] for x in features) - len(features)
    return torch.stack(means), _ridge(scatter / dof, eps)


def _whitener(covariance: torch.Tensor, eps: float) -> torch.Tensor:
    """W = L^{-1} for covariance = L L^T (batched), by a triangular solve, never an explicit inverse."""
    factor, info = torch.linalg.cholesky_ex(covariance)
    if bool((info > 0).any()):
        which = int(torch.nonzero(info.reshape(-1) > 0)[0])
        raise MergeflowError(
            f"covariance {which} is not positive definite even with eps={eps:g} (Cholesky failed): "
            "raise route.eps (e.g. 10x) or check for duplicated / constant features"
        )
    eye = torch.eye(covariance.shape[-1], dtype=covariance.dtype, device=covariance.device).expand_as(covariance)
    return torch.linalg.solve_triangular(factor, eye, upper=False).contiguous()  # as it will be after a file round trip


@dataclass(frozen=True, eq=False)
class TaskGaussians:
    """Fitted per-task Gaussians, float64 (eq=False: tensor fields have no single truth value).

    ``whiteners`` depends on ``covariance``: "full" (T, D, D) and "pooled" (1, D, D) hold lower-triangular
    W = L^{-1} with Sigma + eps*I = L L^T, so distance^2 = ||W (x - mu)||^2; "diagonal" (T, D) holds 1/std and
    "identity" (T, D) holds ones, so both reduce to an elementwise product.
    """

    means: torch.Tensor
    whiteners: torch.Tensor
    covariance: str

    def __post_init__(self) -> None:
        check_choice("covariance", self.covariance, COVARIANCES)
        if self.means.dim() != 2:
            raise MergeflowError(f"means must be (T, D), got {tuple(self.means.shape)}")
        tasks, dim = self.means.shape
        expected = {
            "full": (tasks, dim, dim),
            "pooled": (1, dim, dim),
            "diagonal": (tasks, dim),
            "identity": (tasks, dim),
        }[self.covariance]
        if tuple(self.whiteners.shape) != expected:
            raise MergeflowError(
                f"{self.covariance} whiteners must have shape {expected}, got {tuple(self.whiteners.shape)}: "
                "the stored routing tensors are inconsistent — refit the router"
            )

    @property
    def num_tasks(self) -> int:
        return self.means.shape[0]

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """A flat dict for safetensors; ``covariance`` is not a tensor, so the caller stores it (e.g. in the name)."""
        return {"means": self.means, "whiteners": self.whiteners}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], covariance: str) -> TaskGaussians:
        missing = {"means", "whiteners"} - set(tensors)
        if missing:
            raise MergeflowError(f"routing tensors lack {sorted(missing)}: the file is not a Gaussian router's")
        return cls(tensors["means"].to(torch.float64), tensors["whiteners"].to(torch.float64), covariance)


def fit_gaussians(features: Sequence[torch.Tensor], eps: float = 1e-4, covariance: str = "full") -> TaskGaussians:
    """Fit one Gaussian per task from features[t] (N_t, D); ``covariance`` picks how much of Sigma is estimated.

    "full" is MAD's default (per-task Sigma_t + eps*I; eps makes N < D work), "pooled" shares one LDA covariance,
    "diagonal" keeps per-task variances + eps, "identity" uses Sigma = I (Euclidean distance; eps unused).
    """
    covariance = check_choice("covariance", covariance, COVARIANCES)
    if covariance == "identity":
        checked = check_features(features, min_samples=1, needs="a task mean")
        means = torch.stack([x.mean(dim=0) for x in checked])
        return TaskGaussians(means, torch.ones_like(means), covariance)
    if covariance == "full":
        means, covariances = task_covariances(features, eps)
        return TaskGaussians(means, _whitener(covariances, eps), covariance)
    eps = _check_eps(eps)
    checked = check_features(features, min_samples=2)
    if covariance == "pooled":
        means, pooled = _pooled_covariance(checked, eps)
        return TaskGaussians(means, _whitener(pooled.unsqueeze(0), eps), covariance)
    centred = [_centred(x) for x in checked]
    means = torch.stack([mean for mean, _ in centred])
    variances = torch.stack([c.square().sum(dim=0) / (c.shape[0] - 1) for _, c in centred]) + eps
    return TaskGaussians(means, variances.rsqrt(), covariance)


def check_queries(x: torch.Tensor, dim: int, device: torch.device) -> torch.Tensor:
    """Query features (B, D) as float64 on the fitted tensors' device, refusing shapes and NaN/Inf."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != dim:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise MergeflowError(f"query features must be a (B, {dim}) tensor, got {shape}: use the calibration extractor")
    x = x.detach().to(device=device, dtype=torch.float64)
    if not torch.isfinite(x).all():
        raise MergeflowError("query features contain NaN or Inf: check the feature extractor")
    return x


def mahalanobis(gaussians: TaskGaussians, x: torch.Tensor) -> torch.Tensor:
    """Distances (B, T), float64 and not squared: ||W_t (x_b - mu_t)|| for every input b and task t at once."""
    x = check_queries(x, gaussians.means.shape[1], gaussians.means.device)
    diff = x.unsqueeze(1) - gaussians.means.unsqueeze(0)  # (B, T, D)
    if gaussians.covariance == "full":
        white = torch.einsum("tij,btj->bti", gaussians.whiteners, diff)
    elif gaussians.covariance == "pooled":
        white = torch.einsum("ij,btj->bti", gaussians.whiteners[0], diff)
    else:
        white = diff * gaussians.whiteners.unsqueeze(0)
    return torch.linalg.vector_norm(white, dim=-1)
