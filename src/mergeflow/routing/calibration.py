"""Calibration: draw N training inputs per task (seeded), fit a router on their features, set the reject threshold.

The threshold is an empirical quantile of the minimum router distance over held-in inputs that were *not* used to
fit (the validation split): a quantile of the calibration samples themselves would be optimistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mergeflow.errors import MergeflowError
from mergeflow.routing.reject import calibrate_threshold
from mergeflow.routing.routers import Router, fit_router
from mergeflow.seeding import torch_generator


def prepare_features(features: torch.Tensor, normalize: bool) -> torch.Tensor:
    """The features routers see: as extracted, or L2-normalised (``route.normalize``)."""
    return F.normalize(features, dim=-1) if normalize else features


def calibration_rows(count: int, task: str, samples: int, seed: int) -> torch.Tensor:
    """The ``samples`` row indices (of ``count``) drawn for ``task``: a generator derived from (seed, task) only, so
    adding a task never changes another's samples, and a stage can embed just these inputs."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:  # a negative one sliced from the end
        raise MergeflowError(f"{samples!r} calibration samples per task: a router needs at least 2 (a covariance of one is degenerate)")
    if samples > count:
        raise MergeflowError(f"{samples} calibration samples requested but task {task!r} has only {count} training inputs: lower it")
    return torch.randperm(count, generator=torch_generator(seed, "calibration", task))[:samples]


def draw_calibration(features: Sequence[torch.Tensor], tasks: Sequence[str], samples: int | None, seed: int) -> list[torch.Tensor]:
    """N rows per task, drawn without replacement (``calibration_rows``); None = every row."""
    return [rows if samples is None else rows[calibration_rows(rows.shape[0], task, samples, seed)]
            for task, rows in zip(tasks, features, strict=True)]


@dataclass(frozen=True)
class Calibrated:
    """A fitted router and its reject threshold (the held-in quantile of minimum distances)."""

    router: Router
    reject_threshold: float


def calibrate(
    name: str,
    tasks: Sequence[str],
    train: Sequence[torch.Tensor],
    held_in: Sequence[torch.Tensor],
    *,
    samples: int | None,
    eps: float,
    seed: int,
    quantile: float,
) -> Calibrated:
    """Fit router ``name`` on ``samples`` rows per task of ``train``; threshold from ``held_in`` (e.g. validation)."""
    router = fit_router(name, tasks, draw_calibration(train, tasks, samples, seed), eps)
    threshold = calibrate_threshold(router.min_distance(torch.cat(list(held_in))), quantile)
    return Calibrated(router, threshold)
