"""The task routers as users see them (torch-free): name and what it scores. ``routing/routers.py`` binds each name
to its fit and load; params.yaml and the CLI check names against this list without importing torch."""

from __future__ import annotations

ROUTERS: dict[str, str] = {
    "mad": "Mahalanobis distance to per-task Gaussians (full covariance each)",
    "pooled": "Mahalanobis distance with one covariance pooled over tasks",
    "diagonal": "per-task Gaussians with diagonal covariance",
    "euclidean": "distance to each task's mean feature",
    "cosine": "cosine similarity to each task's mean feature",
    "knn1": "the 1 nearest calibration sample",
    "knn3": "the 3 nearest calibration samples",
    "knn5": "the 5 nearest calibration samples",
    "knn10": "the 10 nearest calibration samples",
}
ROUTER_NAMES: tuple[str, ...] = tuple(ROUTERS)
