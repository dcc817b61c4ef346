"""reports/report.md for task-unknown serving (MAD), built only from the results table and the routing analyses.

Tables follow the shapes of the MAD paper (Tables 2, 4, 5, 6, 7, F1, F2, F7); figures are the routing confusion
matrix and the Bhattacharyya heatmap. Nothing here computes a model output: it formats what the stages measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mergeflow.errors import MergeflowError
from mergeflow.reporting.tables import Heatmap, Report
from mergeflow.reporting.tables import format_wide as _format_wide
from mergeflow.reporting.tables import markdown as _markdown
from mergeflow.reporting.tables import pct as _pct
from mergeflow.reporting.tables import per_task as _per_task


def _label(method: str, router: str) -> str:
    if router == method or (method, router) == ("mow_merging", "mow"):
        return f"{method} (task-unknown, per-input weights)"
    if router == "oracle":
        return f"{method} (task-known)"
    if router == "none":
        return f"{method} (task-unknown, one model)"
    return f"{method} + {router}"


def accuracy_table(results: pd.DataFrame, tasks: Sequence[str], routers: Sequence[str], main_router: str,
                   per_input: Sequence[tuple[str, str]] = ()) -> str:
    """Table 2 shape: fine-tuned, task-known merges, static task-unknown baselines, the trained per-input methods
    (``per_input``: (method, router) rows of serve_dynamic@), routed mask banks."""
    accuracy = results[results["metric"] == "accuracy"]
    static = accuracy[accuracy["router"] == "none"]["method"].unique().tolist()
    routed_methods = accuracy[accuracy["router"].isin(routers)]["method"].unique().tolist()
    wanted = [("finetuned", "oracle")] + [(m, "oracle") for m in static + routed_methods] + [(m, "none") for m in static]
    wanted += [*per_input, *[(m, main_router) for m in routed_methods]]
    wide = _per_task(accuracy, tasks, ["method", "router"])
    present = [key for key in wanted if key in wide.index]
    if not present:
        raise MergeflowError("the results table has no task-unknown rows: run the evaluate_routed/evaluate_static stages")
    table = _format_wide(wide.loc[present], tasks)
    finetuned = wide.loc[("finetuned", "oracle"), "avg"] if ("finetuned", "oracle") in wide.index else float("nan")
    table.insert(0, "model", [_label(m, r) for m, r in present])
    table["x fine-tuned"] = [f"{wide.loc[key, 'avg'] / finetuned:.3f}" for key in present]
    return _markdown(table.drop(columns=["method", "router"]))


def cost_table(results: pd.DataFrame, routers: Sequence[str], per_input_routers: Sequence[str] = ()) -> str:
    """Table 4 shape: seconds per input at the serving batch size and peak tensor memory, next to accuracy."""
    rows = []
    served_by = ["none", *per_input_routers, *routers]
    served = results[results["router"].isin(served_by)]
    order = {router: index for index, router in enumerate(served_by)}
    keys = sorted(served.groupby(["method", "router"]).groups, key=lambda key: (key[1] != "none", key[0], order[key[1]]))
    for method, router in keys:
        group = served[(served["method"] == method) & (served["router"] == router)]
        metrics = group.groupby("metric")["value"].mean()
        if "seconds_per_input" not in metrics:
            continue
        rows.append({
            "model": _label(method, router),
            "batch inference": "yes",
            "ms per input": f"{1e3 * metrics['seconds_per_input']:.3f}",
            "peak tensor memory (MB)": f"{metrics['peak_memory_bytes'] / 1e6:.1f}",
            "avg accuracy": _pct(metrics["accuracy"]),
        })
    return _markdown(pd.DataFrame(rows))


def router_tables(results: pd.DataFrame, tasks: Sequence[str], routers: Sequence[str]) -> tuple[str, str]:
    """Table 7 shape (routing accuracy per task for each router) and end-to-end accuracy per method x router."""
    routing = results[(results["metric"] == "routing_accuracy") & results["router"].isin(routers)]
    method = routing["method"].iloc[0]
    per_router = _format_wide(_per_task(routing[routing["method"] == method], tasks, ["router"]).reindex(list(routers)), tasks)
    accuracy = results[(results["metric"] == "accuracy") & results["router"].isin(routers)]
    matrix = accuracy.groupby(["router", "method"])["value"].mean().unstack("method").reindex(list(routers))
    matrix = matrix.map(_pct).reset_index()
    return _markdown(per_router), _markdown(matrix)


def sweep_tables(sweeps: pd.DataFrame, tasks: Sequence[str]) -> tuple[str, str, str]:
    """Table 6 shape (mean and std over seeds per N), Table F1 (N x seed per task) and Table F2 (eps x seed)."""
    samples = sweeps[sweeps["sweep"] == "samples"]
    averages = samples.groupby(["value", "seed"], sort=False)["routing_accuracy"].mean().reset_index()
    summary = averages.groupby("value", sort=False)["routing_accuracy"].agg(["mean", "std", "min", "max"]).reset_index()
    summary = summary.rename(columns={"value": "N per task"})
    for column in ("mean", "std", "min", "max"):
        summary[column] = summary[column].map(lambda v: "" if pd.isna(v) else _pct(v))
    by_seed = _format_wide(_per_task(samples, tasks, ["value", "seed"], "routing_accuracy"), tasks).rename(columns={"value": "N"})
    eps = sweeps[sweeps["sweep"] == "eps"]
    by_eps = _format_wide(_per_task(eps, tasks, ["value", "seed"], "routing_accuracy"), tasks).rename(columns={"value": "eps"})
    return _markdown(summary), _markdown(by_seed), _markdown(by_eps)


def feature_model_table(frame: pd.DataFrame, tasks: Sequence[str]) -> str:
    """Table F7 shape: MAD routing accuracy with features of each merged model."""
    return _markdown(_format_wide(_per_task(frame, tasks, ["feature_model"], "routing_accuracy"), tasks))


def seen_unseen_table(frame: pd.DataFrame, results: pd.DataFrame) -> str:
    """Table 5 shape: accuracy on seen / unseen / all tasks, without and with the reject option, and reject rates."""
    seen_tasks = frame[frame["seen"]]["task"].unique().tolist()
    unseen_tasks = frame[~frame["seen"]]["task"].unique().tolist()
    rows = []
    static = results[(results["router"] == "none") & (results["metric"] == "accuracy")]
    for method, group in static.groupby("method", sort=False):
        scores = group.set_index("task")["value"]
        rows.append({"model": _label(method, "none"), "seen": _pct(scores[seen_tasks].mean()),
                     "unseen": _pct(scores[unseen_tasks].mean()), "all": _pct(scores.mean()),
                     "seen rejected %": "", "unseen rejected %": ""})
    for method, group in frame.groupby("method", sort=False):
        scores = group.set_index("task")
        for column, name in (("accuracy", "+ mad"), ("accuracy_with_reject", "+ mad + reject")):
            rows.append({
                "model": f"{method} {name}", "seen": _pct(scores.loc[seen_tasks, column].mean()),
                "unseen": _pct(scores.loc[unseen_tasks, column].mean()), "all": _pct(scores[column].mean()),
                "seen rejected %": _pct(scores.loc[seen_tasks, "reject_rate"].mean()) if "reject" in name else "",
                "unseen rejected %": _pct(scores.loc[unseen_tasks, "reject_rate"].mean()) if "reject" in name else "",
            })
    return _markdown(pd.DataFrame(rows))


def reject_table(frame: pd.DataFrame) -> str:
    """Held-in quantile -> threshold, false rejects of seen inputs, rejects of unseen inputs."""
    return _markdown(pd.DataFrame({
        "held-in quantile": frame["quantile"].map(lambda v: f"{v:g}"),
        "threshold": frame["threshold"].map(lambda v: f"{v:.4g}"),
        "seen inputs rejected %": frame["seen_reject_rate"].map(_pct),
        "unseen inputs rejected %": frame["unseen_reject_rate"].map(_pct),
    }))


def confusion_heatmap(confusion: pd.DataFrame, tasks: Sequence[str]) -> Heatmap:
    counts = confusion.pivot_table(index="task", columns="served_task", values="count", aggfunc="sum", fill_value=0)
    counts = counts.reindex(index=list(tasks), columns=list(tasks), fill_value=0)
    fractions = counts.to_numpy(dtype=float) / np.maximum(counts.to_numpy().sum(axis=1, keepdims=True), 1)
    router = str(confusion["router"].iloc[0])
    return Heatmap("routing_confusion", fractions, list(tasks), list(tasks), f"Routing confusion ({router})",
                   "fraction of the true task's inputs", row_label="true task", column_label="routed to")


def bhattacharyya_heatmap(frame: pd.DataFrame, tasks: Sequence[str]) -> tuple[Heatmap, str]:
    distance = frame.pivot_table(index="task", columns="other", values="distance").reindex(index=list(tasks), columns=list(tasks))
    heatmap = Heatmap("bhattacharyya", distance.to_numpy(), list(tasks), list(tasks), "Bhattacharyya distance between task Gaussians",
                      "B(t, s)", number_format="{:.1f}")
    pairs = frame[frame["task"] < frame["other"]].sort_values("bayes_error_bound", ascending=False).head(5)
    closest = pd.DataFrame({
        "task pair": [f"{a} / {b}" for a, b in zip(pairs["task"], pairs["other"], strict=True)],
        "Bhattacharyya distance": pairs["distance"].map(lambda v: f"{v:.2f}"),
        "Bayes-error bound": pairs["bayes_error_bound"].map(lambda v: f"{v:.2e}"),
    })
    return heatmap, _markdown(closest)


def build_report(
    suite: str,
    tasks: Sequence[str],
    routers: Sequence[str],
    results: pd.DataFrame,
    analysis: Mapping[str, pd.DataFrame],
    summary: Mapping[str, Any],
    per_input: Sequence[tuple[str, str]] = (),
) -> Report:
    """The whole report; figures are linked as ``figures/NAME.png`` next to it (the stage writes them there)."""
    main_router = str(summary["confusion_router"])
    results = results[results["suite"] == suite]
    confusion = confusion_heatmap(analysis["confusion"], tasks)
    bhattacharyya, closest = bhattacharyya_heatmap(analysis["bhattacharyya"], tasks)
    per_router, by_method = router_tables(results, tasks, routers)
    table6, table_f1, table_f2 = sweep_tables(analysis["sweeps"], tasks)
    settings = (f"features of `{summary['feature_model']}`, N = {summary['samples']} per task, eps = {summary['eps']}, "
                f"seed {summary['seed']}")
    sections = [
        f"# mergeflow report: task-unknown serving on `{suite}`",
        "Generated by the `report` stage from `reports/results.parquet` and `reports/routing/` (never edited by hand). "
        f"Accuracies in percent on each task's test split. Routers calibrated with {settings}.",
        "## Multi-task accuracy, task known and task unknown (Table 2 shape)",
        "Task-known rows use each task's own model (mask methods) or the one merged model with the task's head. "
        "Task-unknown rows serve one stream of every task's test inputs mixed, in batches; a routed input served as "
        f"the wrong task counts as wrong. Routed rows use `{main_router}`."
        + (" Per-input-weights rows (WEMoE, MoW-Merging: serve_dynamic@) are scored with the input's dataset head, "
           "as their papers do; what they decide without the task label is each input's weights." if per_input else ""),
        accuracy_table(results, tasks, routers, main_router, per_input),
        "## Inference cost (Table 4 shape)",
        "Wall time per input of the whole serving path (routing features, grouping, rebuilding each routed task's "
        "model from the bit-packed bank, forward passes) at the serving batch size, on this machine's CPU; peak tensor "
        "memory counts the weights, bank, heads and router held plus one rebuilt task model and its delta.",
        cost_table(results, routers, [router for _, router in per_input]),
        "## Task classification by router (Table 7 shape)",
        "Routing accuracy per task (the fraction of a task's test inputs routed to it).",
        per_router,
        "End-to-end average accuracy of each mask method under each router:",
        by_method,
        "## Calibration sample size (Table 6 shape)",
        "MAD routing accuracy averaged over tasks; mean, std, min and max over seeds ('all' = every training input).",
        table6,
        "### Per task and seed (Table F1 shape)",
        table_f1,
        "### Covariance ridge eps (Table F2 shape)",
        table_f2,
        "## Features from different merged models (Table F7 shape)",
        feature_model_table(analysis["feature_models"], tasks),
        "## Seen vs unseen tasks, and the reject option (Table 5 shape)",
        f"MAD calibrated on {', '.join(f'`{t}`' for t in summary['seen_tasks'])} only; every task is tested. An unseen "
        "task's input can only be routed to a wrong task. With the reject option, an input whose smallest distance "
        f"exceeds the {summary['reject_quantile']} quantile of held-in (validation) distances is served by "
        f"`{summary['reject_fallback']}` with its task's head instead.",
        seen_unseen_table(analysis["seen_unseen"], results),
        "How the held-in quantile trades false rejects of seen inputs against catching unseen ones (a curve to read, "
        "not a selection; the pipeline uses the quantile in params.yaml):",
        reject_table(analysis["reject_tradeoff"]),
        "## Routing confusion",
        f"![routing confusion](figures/{confusion.name}.png)",
        "## Bhattacharyya distance between task Gaussians (Fig. D1 shape)",
        f"![Bhattacharyya distances](figures/{bhattacharyya.name}.png)",
        "The five most confusable pairs by the Bayes-error bound sqrt(p_t p_s) exp(-B) (uniform priors):",
        closest,
    ]
    return Report("\n\n".join(sections) + "\n", [confusion, bhattacharyya])
