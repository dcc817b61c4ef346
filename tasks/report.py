"""Stage report: reports/report.md and its PNG figures, generated from the results table and the routing analyses."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from mergeflow.atomic import write_text_atomic
from mergeflow.errors import MergeflowError
from mergeflow.params import Params
from mergeflow.reporting.figures import heatmap_png
from mergeflow.reporting.mad_report import build_report
from tasks._paths import FIGURES, REPORT, REPORTS, ROUTING_ANALYSIS
from tasks._stage import run_stage

ANALYSES = ("sweeps", "feature_models", "seen_unseen", "reject_tradeoff", "bhattacharyya", "confusion")


def build(args: argparse.Namespace, params: Params) -> None:
    try:
        results = pd.read_parquet(REPORTS / "results.parquet")
        analysis = {name: pd.read_parquet(ROUTING_ANALYSIS / f"{name}.parquet") for name in ANALYSES}
        summary = json.loads((ROUTING_ANALYSIS / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        raise MergeflowError(f"cannot read the report's inputs ({exc}); run the results and analyze_routing stages") from exc
    report = build_report(params.suite.name, params.suite.tasks, params.route.routers, results, analysis, summary)
    for figure in report.figures:
        heatmap_png(FIGURES / f"{figure.name}.png", figure.values, figure.rows, figure.columns, title=figure.title,
                    colorbar=figure.colorbar, number_format=figure.number_format, row_label=figure.row_label,
                    column_label=figure.column_label)
    write_text_atomic(REPORT, report.markdown)
    print(f"report: {REPORT} ({len(report.markdown.splitlines())} lines), {len(report.figures)} figures in {FIGURES}")


if __name__ == "__main__":
    run_stage("report", "Render reports/report.md and its figures from the results table and routing analyses.", build)
