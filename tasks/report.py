"""Stage report: reports/report.md and its PNG figures, generated from the results table, the analyses of the
routing (MAD) and adaptation (AdaRank) stages, and the stages' wall-clock timings (reports/timings/*.json, joined onto
the results table for the cost tables). Its outputs are uncached: the timings in them differ on every run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from mergeflow.atomic import write_text_atomic
from mergeflow.declarations.dynamic import dynamic_declaration
from mergeflow.errors import MergeflowError
from mergeflow.evaluation.timings import read_timings, with_timings
from mergeflow.params import Params
from mergeflow.reporting.adaptation_report import build_adaptation_report
from mergeflow.reporting.figures import heatmap_png, lines_png
from mergeflow.reporting.lora_report import build_lora_report
from mergeflow.reporting.mad_report import build_report
from mergeflow.reporting.paper import build_paper_report
from mergeflow.reporting.regime_report import build_regime_report
from mergeflow.reporting.tables import Heatmap
from tasks._lora_inputs import load_policy
from tasks._paths import ADAPTATION_ANALYSIS, FIGURES, REGIME, REPORT, REPORTS, ROUTING_ANALYSIS, timing_path
from tasks._stage import run_stage

ROUTING = ("sweeps", "feature_models", "seen_unseen", "reject_tradeoff", "bhattacharyya", "confusion")
ADAPTATION = ("variants", "ranks", "masks", "steps")


def _frames(folder: Path, names: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in names}


def timed_stages(params: Params) -> list[str]:
    """The stages whose timing files the report reads: those of this params.yaml (not a leftover of a removed method)."""
    return ["evaluate_static", *(f"evaluate_routed@{m}" for m in params.route.methods), *(f"adapt@{m}" for m in params.adapt.methods),
            *(f"serve_lora@{m}" for m in params.lora.methods), *(f"serve_dynamic@{m}" for m in params.dynamic.methods)]


def build(args: argparse.Namespace, params: Params) -> None:
    try:
        results = pd.read_parquet(REPORTS / "results.parquet")
        routing, adaptation = _frames(ROUTING_ANALYSIS, ROUTING), _frames(ADAPTATION_ANALYSIS, ADAPTATION)
        summary = json.loads((ROUTING_ANALYSIS / "summary.json").read_text())
        regime = json.loads(REGIME.read_text())
        timings = read_timings(timing_path(stage) for stage in timed_stages(params))
    except (OSError, ValueError) as exc:
        raise MergeflowError(f"cannot read the report's inputs ({exc}); run results, regime, analyze_routing, analyze_adaptation and the timed stages") from exc
    results = with_timings(results, timings)
    adapt = params.adapt
    per_input = [(dynamic_declaration(name).method, dynamic_declaration(name).router) for name in params.dynamic.methods]
    parts = [
        build_report(params.suite.name, params.suite.tasks, params.route.routers, results, routing, summary, per_input),
        build_regime_report(regime, params.suite.tasks),
        build_paper_report(params.suite.name, params.suite.tasks, results, params.suite.kind),
        build_adaptation_report(params.suite.tasks, adapt.methods, adapt.analysis.data_method,
                                results[results["suite"] == params.suite.name], adaptation,
                                {"batch_size": adapt.batch_size, "steps": adapt.steps, "lr": adapt.lr}),
        build_lora_report(params.suite.name, params.suite.tasks, results,
                          load_policy("tr")[1] if "tr" in params.lora.methods else None, [router for _, router in per_input]),
    ]
    for figure in (figure for part in parts for figure in part.figures):
        path = FIGURES / f"{figure.name}.png"
        if isinstance(figure, Heatmap):
            heatmap_png(path, figure.values, figure.rows, figure.columns, title=figure.title, colorbar=figure.colorbar,
                        number_format=figure.number_format, row_label=figure.row_label, column_label=figure.column_label)
        else:
            lines_png(path, figure.x_labels, figure.series, title=figure.title, ylabel=figure.ylabel)
    markdown = "\n".join(part.markdown for part in parts)
    write_text_atomic(REPORT, markdown)
    count = sum(len(part.figures) for part in parts)
    print(f"report: {REPORT} ({len(markdown.splitlines())} lines), {count} figures in {FIGURES}")


if __name__ == "__main__":
    run_stage("report", "Render reports/report.md and its figures from the results table and the analyses.", build)
