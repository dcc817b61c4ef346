"""Wall-clock timings, kept apart from every cached output.

A timing differs on every run, so a cached artifact holding one would get a new hash each time and a teammate's pushed
outputs would never match a local rerun. Each stage that measures time writes its figures to its own small JSON file
(``reports/timings/<stage>.json``, an uncached DVC metric committed with ``dvc.lock``) in the results table's long
format; the report joins them back onto the results table to render its cost tables.

File shape (what ``dvc metrics show`` reads): ``{suite: {"method/router": {metric: value}}}``; every timing is one
figure for all tasks (``task`` = ``"all"`` in the long format).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from mergeflow.atomic import write_text_atomic
from mergeflow.errors import MergeflowError
from mergeflow.evaluation.results import COLUMNS, result_rows

ALL_TASKS = "all"
SECONDS_PER_INPUT = "seconds_per_input"
MEDIAN_SECONDS_PER_STEP = "median_seconds_per_step"
TIMING_METRICS = (SECONDS_PER_INPUT, MEDIAN_SECONDS_PER_STEP)


def timing_rows(suite: str, method: str, router: str, metric: str, seconds: float) -> pd.DataFrame:
    """One timing as a results-format row (names checked against the results contract)."""
    if metric not in TIMING_METRICS:
        raise MergeflowError(f"unknown timing metric {metric!r}; known: {', '.join(TIMING_METRICS)}")
    return result_rows(suite, method, router, metric, {ALL_TASKS: seconds})


def write_timings(path: str | os.PathLike[str], rows: Iterable[pd.DataFrame]) -> None:
    """Write one stage's timings atomically (an empty file ``{}`` when it timed nothing: the declared output exists)."""
    frames = [frame for frame in rows if len(frame)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    if tuple(table.columns) != COLUMNS or set(table["task"]) - {ALL_TASKS}:
        raise MergeflowError(f"{path}: timings must be results-format rows for task {ALL_TASKS!r}")
    nested: dict[str, dict[str, dict[str, float]]] = {}
    for row in table.itertuples(index=False):
        nested.setdefault(str(row.suite), {}).setdefault(f"{row.method}/{row.router}", {})[str(row.metric)] = float(row.value)
    write_text_atomic(path, json.dumps(nested, indent=2, sort_keys=True) + "\n")


def read_timings(paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Every timing file in ``paths`` as results-format rows (sorted, so the report does not depend on file order)."""
    records = []
    for path in sorted(Path(p) for p in paths):
        try:
            nested = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MergeflowError(f"cannot read timings {path}: {exc}") from exc
        for suite, entries in nested.items():
            for key, metrics in entries.items():
                method, _, router = key.partition("/")
                records += [(suite, method, router, ALL_TASKS, metric, float(value)) for metric, value in metrics.items()]
    table = pd.DataFrame(records, columns=list(COLUMNS))
    return table.sort_values(list(COLUMNS[:-1]), kind="stable").reset_index(drop=True)


def with_timings(results: pd.DataFrame, timings: pd.DataFrame) -> pd.DataFrame:
    """The results table with the timing rows appended, for the report's cost tables; a timing may not repeat a row."""
    key = list(COLUMNS[:-1])
    clash = results.merge(timings[key], on=key)
    if len(clash):
        raise MergeflowError(f"timings repeat rows of the results table: {clash.head(3).to_dict('records')}")
    return pd.concat([results, timings], ignore_index=True) if len(timings) else results
