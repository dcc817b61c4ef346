"""The MAD analyses on cached features: sample-size and eps sweeps, feature models, seen vs unseen tasks with the
reject option, and the Bhattacharyya diagnostic. Inputs are per-task feature tensors; outputs are plain records.

Routing accuracy needs no model run (the router only sees features). End-to-end accuracy under a router is
``routed correctly AND correct when served as its own task``: a correctly routed input is served by exactly the
model and head of task-known (oracle) inference, so per-input oracle correctness gives it without re-running.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import torch

from mergeflow.errors import MergeflowError
from mergeflow.routing.bhattacharyya import bayes_error_bound, bhattacharyya_distance
from mergeflow.routing.calibration import Calibrated, calibrate, draw_calibration
from mergeflow.routing.gaussian import task_covariances
from mergeflow.routing.routers import Router, fit_router

Record = dict[str, object]
TaskFeatures = Mapping[str, torch.Tensor]
V = TypeVar("V")


def routing_accuracy(router: Router, test: TaskFeatures) -> dict[str, float]:
    """Per task of the router, the fraction of its test inputs routed to it."""
    return {
        task: float((router.route(test[task]) == index).double().mean()) for index, task in enumerate(router.tasks)
    }


def mad_routing_accuracy(
    tasks: Sequence[str], train: TaskFeatures, test: TaskFeatures, samples: int | None, seed: int, eps: float
) -> dict[str, float]:
    """Per-task routing accuracy of MAD fitted on ``samples`` drawn training inputs per task (None: all of them)."""
    router = fit_router("mad", tasks, draw_calibration([train[task] for task in tasks], tasks, samples, seed), eps)
    return routing_accuracy(router, test)


def _sweep(
    sweep: str, values: Sequence[V], seeds: Sequence[int], score: Callable[[V, int], Mapping[str, float]]
) -> list[Record]:
    """One record per value x seed x task: the routing accuracy ``score(value, seed)`` gives each task."""
    return [
        {"sweep": sweep, "value": value, "seed": seed, "task": task, "routing_accuracy": accuracy}
        for value in values for seed in seeds for task, accuracy in score(value, seed).items()
    ]


def sample_size_sweep(
    tasks: Sequence[str], train: TaskFeatures, test: TaskFeatures, samples: Sequence[int], seeds: Sequence[int], eps: float
) -> list[Record]:
    """Routing accuracy of MAD for every N x seed (Tables 6 and F1), plus N = all training inputs (value "all")."""
    records = _sweep("samples", samples, seeds, lambda count, seed: mad_routing_accuracy(tasks, train, test, count, seed, eps))
    return records + _sweep("samples", ["all"], [0], lambda _, seed: mad_routing_accuracy(tasks, train, test, None, seed, eps))


def eps_sweep(
    tasks: Sequence[str], train: TaskFeatures, test: TaskFeatures, eps_values: Sequence[float], seeds: Sequence[int], samples: int
) -> list[Record]:
    """Routing accuracy of MAD for every eps x seed at N = ``samples`` (Table F2)."""
    return _sweep("eps", eps_values, seeds, lambda eps, seed: mad_routing_accuracy(tasks, train, test, samples, seed, eps))


def seen_unseen(
    tasks: Sequence[str],
    seen: Sequence[str],
    features: Mapping[str, TaskFeatures],
    served_correct: Mapping[str, torch.Tensor],
    fallback_correct: Mapping[str, torch.Tensor],
    *,
    samples: int,
    eps: float,
    seed: int,
    quantile: float,
) -> tuple[list[Record], float]:
    """MAD calibrated on ``seen`` only, tested on every task, without and with the reject option (Table 5 shape).

    ``features[split][task]``; ``served_correct[task]`` (bool, test order) says whether the input is classified
    right when served as its own task (oracle routing); ``fallback_correct[task]`` the same for the fallback model
    that serves rejected inputs. An unseen task's input can only be mis-routed; rejected, the fallback serves it.
    Returns per-task records and the reject threshold (held-in quantile on the seen tasks' validation inputs).
    """
    unknown = [task for task in seen if task not in tasks]
    if unknown or not seen:
        raise MergeflowError(f"seen tasks must be a non-empty subset of {list(tasks)}; got {list(seen)}")
    fitted = calibrate(
        "mad", seen, [features["train"][t] for t in seen], [features["val"][t] for t in seen],
        samples=samples, eps=eps, seed=seed, quantile=quantile,
    )
    records: list[Record] = []
    for task in tasks:
        x = features["test"][task]
        is_seen = task in seen
        routed_right = fitted.router.route(x) == seen.index(task) if is_seen else torch.zeros(len(x), dtype=torch.bool)
        accepted = fitted.router.min_distance(x) <= fitted.reject_threshold
        served, fallback = served_correct[task], fallback_correct[task]
        if served.shape != (len(x),) or fallback.shape != (len(x),):
            raise MergeflowError(f"per-input correctness for {task!r} does not match its {len(x)} test inputs")
        without = routed_right & served
        with_reject = torch.where(accepted, without, fallback)
        records.append({
            "task": task, "seen": is_seen,
            "routing_accuracy": float(routed_right.double().mean()),
            "accuracy": float(without.double().mean()),
            "accuracy_with_reject": float(with_reject.double().mean()),
            "reject_rate": float((~accepted).double().mean()),
            "fallback_accuracy": float(fallback.double().mean()),
        })
    return records, fitted.reject_threshold


def reject_tradeoff(
    tasks: Sequence[str], seen: Sequence[str], features: Mapping[str, TaskFeatures], quantiles: Sequence[float],
    *, samples: int, eps: float, seed: int,
) -> list[Record]:
    """How the held-in quantile trades false rejects of seen inputs against rejects of unseen ones (a curve to read,
    not a selection: the pipeline's quantile is the one in params.yaml)."""
    unseen = [task for task in tasks if task not in seen]
    train, val = [features["train"][t] for t in seen], [features["val"][t] for t in seen]
    records: list[Record] = []
    for quantile in quantiles:
        fitted = calibrate("mad", seen, train, val, samples=samples, eps=eps, seed=seed, quantile=quantile)

        def rejected(group: Sequence[str], fitted: Calibrated = fitted) -> float:  # this quantile's router
            distances = fitted.router.min_distance(torch.cat([features["test"][t] for t in group]))
            return float((distances > fitted.reject_threshold).double().mean())

        records.append({"quantile": quantile, "threshold": fitted.reject_threshold,
                        "seen_reject_rate": rejected(seen), "unseen_reject_rate": rejected(unseen)})
    return records


def bhattacharyya(tasks: Sequence[str], train: TaskFeatures, samples: int | None, seed: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, Bayes-error bound), both (T, T), between the task Gaussians MAD fits (same N, seed, eps)."""
    drawn = draw_calibration([train[task] for task in tasks], tasks, samples, seed)
    means, covariances = task_covariances(drawn, eps)
    distance = bhattacharyya_distance(means, covariances)
    return distance, bayes_error_bound(distance)
