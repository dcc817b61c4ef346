"""The router family of the MAD ablations behind one interface: fit on per-task calibration features, then score.

Every router returns scores (B, T) where LOWER is better, so ``route`` is always an argmin and the MAD baselines
(Euclidean, cosine, diagonal, pooled, k-NN) are drop-in replacements in the results table's ``router`` column.
Features are used as given: L2 normalisation, if wanted, is the caller's choice (docs/methods.md §2 leaves it open).
Scores and distances are float64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import torch

from mergeflow.declarations.routing import ROUTER_NAMES
from mergeflow.errors import MergeflowError
from mergeflow.routing.gaussian import TaskGaussians, check_features, check_queries, fit_gaussians, mahalanobis

_GAUSSIAN = {"mad": "full", "pooled": "pooled", "diagonal": "diagonal", "euclidean": "identity"}
_KNN = {"knn1": 1, "knn3": 3, "knn5": 5, "knn10": 10}


class _Scorer(Protocol):
    @property
    def num_tasks(self) -> int: ...

    def scores(self, x: torch.Tensor) -> torch.Tensor: ...

    def min_distance(self, x: torch.Tensor) -> torch.Tensor: ...

    def to_tensors(self) -> dict[str, torch.Tensor]: ...


def _require(state: Mapping[str, torch.Tensor], keys: Sequence[str], name: str) -> None:
    missing = sorted(set(keys) - set(state))
    if missing:
        raise MergeflowError(f"the {name} router state lacks {missing}: the file was not written by this router")


def _cosine_distances(x: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """1 - cos(x_b, r_j), (B, J), clamped to its exact range [0, 2] (a zero vector has cos 0 with everything)."""
    x = check_queries(x, references.shape[1], references.device)
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(references, dim=1).T
    return (1 - cos).clamp(0, 2)


@dataclass(frozen=True, eq=False)
class _Mahalanobis:
    """mad / pooled / diagonal / euclidean: the distance to each task's Gaussian."""

    gaussians: TaskGaussians

    @property
    def num_tasks(self) -> int:
        return self.gaussians.num_tasks

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return mahalanobis(self.gaussians, x)

    def min_distance(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x).min(dim=1).values

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return self.gaussians.to_tensors()


@dataclass(frozen=True, eq=False)
class _Cosine:
    """cosine: 1 - cos to each task's mean feature (the mean of the features as given, normalised afterwards)."""

    means: torch.Tensor

    def __post_init__(self) -> None:
        if self.means.dim() != 2:
            raise MergeflowError(f"cosine router means must be (T, D), got {tuple(self.means.shape)}: refit the router")

    @property
    def num_tasks(self) -> int:
        return self.means.shape[0]

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return _cosine_distances(x, self.means)

    def min_distance(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x).min(dim=1).values

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"means": self.means}


@dataclass(frozen=True, eq=False)
class _Knn:
    """knnK: majority vote of the K calibration samples nearest in cosine distance.

    Score of task t = -votes_t + d_t / 4, where d_t in [0, 2] is the cosine distance of task t's nearest sample
    among the K (2 if none): more votes always win (|d_t / 4| <= 0.5 < 1 vote), and a tie in votes goes to the
    tied task holding the nearest neighbour. Equal distances rank calibration samples by their index (stable
    sort: tasks in order, samples in order), and ``route``'s argmin takes the lowest task index on exact ties.
    """

    samples: torch.Tensor
    labels: torch.Tensor
    k: int
    num_tasks: int

    def __post_init__(self) -> None:
        if self.samples.dim() != 2:
            raise MergeflowError(f"knn samples must be (M, D), got {tuple(self.samples.shape)}: refit the router")
        if self.samples.shape[0] < self.k:
            raise MergeflowError(
                f"knn{self.k} needs at least {self.k} calibration samples in total, got {self.samples.shape[0]}: "
                "raise route.samples or pick a smaller k"
            )
        if self.labels.shape != (self.samples.shape[0],) or not bool(
            ((self.labels >= 0) & (self.labels < self.num_tasks)).all()
        ):
            raise MergeflowError("the knn router's labels do not match its samples and tasks: refit the router")

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        distances, order = torch.sort(_cosine_distances(x, self.samples), dim=1, stable=True)
        nearest, neighbours = distances[:, : self.k], self.labels[order[:, : self.k]]
        votes = torch.zeros(x.shape[0], self.num_tasks, dtype=torch.float64, device=nearest.device)
        votes.scatter_add_(1, neighbours, torch.ones_like(nearest))
        closest = torch.full_like(votes, 2.0).scatter_reduce_(1, neighbours, nearest, reduce="amin")
        return closest / 4 - votes

    def min_distance(self, x: torch.Tensor) -> torch.Tensor:
        """The cosine distance to the nearest calibration sample (not the vote score, which is no distance)."""
        return _cosine_distances(x, self.samples).min(dim=1).values

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"samples": self.samples, "labels": self.labels}


def _fit_gaussian(covariance: str, features: Sequence[torch.Tensor], eps: float) -> _Scorer:
    return _Mahalanobis(fit_gaussians(features, eps, covariance))


def _load_gaussian(covariance: str, state: Mapping[str, torch.Tensor], num_tasks: int) -> _Scorer:
    return _Mahalanobis(TaskGaussians.from_tensors(state, covariance))


def _fit_cosine(features: Sequence[torch.Tensor], eps: float) -> _Scorer:
    checked = check_features(features, min_samples=1, needs="a task mean")
    return _Cosine(torch.stack([x.mean(dim=0) for x in checked]))


def _load_cosine(state: Mapping[str, torch.Tensor], num_tasks: int) -> _Scorer:
    _require(state, ["means"], "cosine")
    return _Cosine(state["means"].to(torch.float64))


def _fit_knn(k: int, features: Sequence[torch.Tensor], eps: float) -> _Scorer:
    checked = check_features(features, min_samples=1, needs="k-NN")
    labels = torch.cat([torch.full((x.shape[0],), t, dtype=torch.int64) for t, x in enumerate(checked)])
    return _Knn(torch.cat(checked), labels, k, len(checked))


def _load_knn(k: int, state: Mapping[str, torch.Tensor], num_tasks: int) -> _Scorer:
    _require(state, ["samples", "labels"], f"knn{k}")
    return _Knn(state["samples"].to(torch.float64), state["labels"].to(torch.int64), k, num_tasks)


@dataclass(frozen=True)
class _Family:
    fit: Callable[[Sequence[torch.Tensor], float], _Scorer]
    load: Callable[[Mapping[str, torch.Tensor], int], _Scorer]


_FAMILIES: dict[str, _Family] = {
    **{name: _Family(partial(_fit_gaussian, cov), partial(_load_gaussian, cov)) for name, cov in _GAUSSIAN.items()},
    "cosine": _Family(_fit_cosine, _load_cosine),
    **{name: _Family(partial(_fit_knn, k), partial(_load_knn, k)) for name, k in _KNN.items()},
}
assert tuple(_FAMILIES) == ROUTER_NAMES, "every declared router is bound to its fit and load, in declaration order"


def _family(name: str) -> _Family:
    if name not in _FAMILIES:
        raise MergeflowError(f"unknown router {name!r}; known routers: {', '.join(ROUTER_NAMES)}")
    return _FAMILIES[name]


def _check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    tasks = tuple(tasks)
    if not tasks or len(set(tasks)) != len(tasks) or not all(isinstance(t, str) and t for t in tasks):
        raise MergeflowError(f"router tasks must be distinct non-empty names, got {list(tasks)}")
    return tasks


@dataclass(frozen=True, eq=False)
class Router:
    """A fitted router: task names in score-column order plus the scorer that holds its tensors."""

    name: str
    tasks: tuple[str, ...]
    scorer: _Scorer

    def __post_init__(self) -> None:
        if self.scorer.num_tasks != len(self.tasks):
            raise MergeflowError(
                f"the {self.name} router was fitted on {self.scorer.num_tasks} tasks but {len(self.tasks)} task names "
                "were given: pass the task list it was fitted with"
            )

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) float64, lower = more likely that task (distance, 1 - cos, or the k-NN vote score)."""
        return self.scorer.scores(x)

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) int64 task indices into ``tasks``; exact ties go to the lowest index."""
        return self.scores(x).argmin(dim=1)

    def min_distance(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) float64 distance to the nearest task (k-NN: nearest calibration sample), for the reject option."""
        return self.scorer.min_distance(x)

    def state(self) -> dict[str, torch.Tensor]:
        """Flat tensors for safetensors; ``name`` and ``tasks`` go in its metadata."""
        return dict(self.scorer.to_tensors())

    @classmethod
    def from_state(cls, name: str, tasks: Sequence[str], state: Mapping[str, torch.Tensor]) -> Router:
        tasks = _check_tasks(tasks)
        return cls(name, tasks, _family(name).load(state, len(tasks)))


def fit_router(name: str, tasks: Sequence[str], features: Sequence[torch.Tensor], eps: float = 1e-4) -> Router:
    """Fit router ``name`` on features[t] (N_t, D) of task tasks[t]; ``eps`` is the covariance ridge (Gaussians)."""
    family = _family(name)
    tasks = _check_tasks(tasks)
    if len(tasks) != len(features):
        raise MergeflowError(f"{len(tasks)} task names but {len(features)} feature tensors: pass one per task")
    return Router(name, tasks, family.fit(features, eps))
