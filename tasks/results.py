"""Stage results: collect every evaluation part into reports/results.parquet (+ .csv) and reports/metrics.json."""

from __future__ import annotations

import argparse

from mergeflow.evaluation.results import collect_parts, write_table
from mergeflow.params import Params
from tasks._paths import REPORTS, RESULT_PARTS
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    table = collect_parts(RESULT_PARTS)
    write_table(table, REPORTS / "results.parquet", REPORTS / "results.csv", REPORTS / "metrics.json")
    summary = table.groupby(["suite", "method", "router", "metric"])["value"].mean().round(4)
    print(summary.to_string())


if __name__ == "__main__":
    run_stage("results", "Concatenate the evaluation parts into the results table and metrics.json.", build)
