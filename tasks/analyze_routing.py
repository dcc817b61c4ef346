"""Stage analyze_routing: the MAD analyses on cached features and per-input predictions (no model runs here).

Writes reports/routing/: sweeps.parquet (N x seed, eps x seed), feature_models.parquet, seen_unseen.parquet,
reject_tradeoff.parquet, bhattacharyya.parquet, confusion.parquet and summary.json; the report stage renders them.
"""

from __future__ import annotations

import argparse
import json
from typing import TypedDict

import pandas as pd
import torch

from mergeflow.atomic import atomic_path, write_text_atomic
from mergeflow.errors import MergeflowError
from mergeflow.params import Params
from mergeflow.routing import analysis
from tasks._paths import ROUTING_ANALYSIS, merged_part_path, predictions_path, static_predictions_path
from tasks._routing_inputs import load_features
from tasks._stage import run_stage


def _write(name: str, frame: pd.DataFrame) -> None:
    with atomic_path(ROUTING_ANALYSIS / f"{name}.parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def _per_task_correct(predictions: pd.DataFrame, router: str, tasks: list[str]) -> dict[str, torch.Tensor]:
    """{task: bool tensor in test-split order} from a predictions table."""
    rows = predictions[predictions["router"] == router]
    if rows.empty:
        raise MergeflowError(f"no {router!r} rows in the predictions; rerun the evaluate stages")
    return {task: torch.from_numpy(rows[rows["task"] == task].sort_values("position")["correct"].to_numpy().copy()) for task in tasks}


def _check_oracle_matches_task_known(methods: list[str], tasks: list[str]) -> None:
    """Routed serving with oracle routing must reproduce merge@'s task-known accuracy input for input
    (same model, same head): compare the counts of correct inputs per task, exactly."""
    for method in methods:
        served = _per_task_correct(pd.read_parquet(predictions_path(method)), "oracle", tasks)
        known = pd.read_parquet(merged_part_path(method)).set_index("task")["value"]
        for task in tasks:
            if round(float(known[task]) * len(served[task])) != int(served[task].sum()):
                raise MergeflowError(
                    f"{method} {task}: oracle-routed serving gets {int(served[task].sum())}/{len(served[task])} right but "
                    f"task-known evaluation {float(known[task]):.4f}; the serving path differs from merge@'s evaluation"
                )
    print(f"analyze_routing: oracle routing reproduces the task-known accuracy of {', '.join(methods)} exactly")


class _MadSettings(TypedDict):
    """MAD's calibration settings (route:), passed by keyword to every analysis."""

    samples: int
    seed: int
    eps: float


def build(args: argparse.Namespace, params: Params) -> None:
    route, tasks = params.route, params.suite.tasks
    settings: _MadSettings = {"samples": route.samples, "seed": route.seed, "eps": route.eps}
    features = {model: load_features(params, model) for model in route.feature_models}
    main = features[route.feature_model]
    print("analyze_routing: sample-size and eps sweeps")
    sweeps = analysis.sample_size_sweep(tasks, main["train"], main["test"], route.analysis.samples, route.analysis.seeds, route.eps)
    sweeps += analysis.eps_sweep(tasks, main["train"], main["test"], route.analysis.eps, route.analysis.seeds, route.samples)
    _write("sweeps", pd.DataFrame(sweeps).astype({"value": str}))
    _write("feature_models", pd.DataFrame([
        {"feature_model": model, "task": task, "routing_accuracy": score}
        for model, cached in features.items()
        for task, score in analysis.mad_routing_accuracy(tasks, cached["train"], cached["test"], **settings).items()
    ]))

    _check_oracle_matches_task_known(route.methods, tasks)
    fallback = _per_task_correct(pd.read_parquet(static_predictions_path(route.reject.fallback)), "none", tasks)
    seen_rows, thresholds = [], {}
    for method in route.methods:
        served = _per_task_correct(pd.read_parquet(predictions_path(method)), "oracle", tasks)
        records, thresholds[method] = analysis.seen_unseen(
            tasks, route.analysis.seen_tasks, main, served, fallback, quantile=route.reject.quantile, **settings
        )
        seen_rows += [{"method": method, **record} for record in records]
    _write("seen_unseen", pd.DataFrame(seen_rows))
    _write("reject_tradeoff", pd.DataFrame(analysis.reject_tradeoff(
        tasks, route.analysis.seen_tasks, main, sorted({0.5, 0.8, 0.9, 0.95, 0.99, route.reject.quantile}), **settings
    )))

    distance, bound = analysis.bhattacharyya(tasks, main["train"], route.samples, route.seed, route.eps)
    _write("bhattacharyya", pd.DataFrame([
        {"task": a, "other": b, "distance": float(distance[i, j]), "bayes_error_bound": float(bound[i, j])}
        for i, a in enumerate(tasks) for j, b in enumerate(tasks)
    ]))

    router = "mad" if "mad" in route.routers else route.routers[0]
    predictions = pd.read_parquet(predictions_path(route.methods[0]))
    routed = predictions[predictions["router"] == router]
    confusion = routed.groupby(["task", "served_task"]).size().rename("count").reset_index()
    _write("confusion", confusion.assign(router=router))
    summary = {
        "feature_model": route.feature_model, "confusion_router": router, "reject_quantile": route.reject.quantile,
        "reject_fallback": route.reject.fallback, "seen_tasks": route.analysis.seen_tasks,
        "seen_unseen_thresholds": thresholds, **settings,
    }
    write_text_atomic(ROUTING_ANALYSIS / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    mean = pd.DataFrame(sweeps).groupby(["sweep", "value"], sort=False)["routing_accuracy"].mean()
    print("analyze_routing: mean routing accuracy\n" + mean.to_string())


if __name__ == "__main__":
    run_stage("analyze_routing", "MAD analyses: N and eps sweeps, feature models, seen/unseen with reject, Bhattacharyya.", build)
