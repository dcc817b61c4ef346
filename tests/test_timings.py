"""Timing files (mergeflow/evaluation/timings.py): the only place wall-clock figures are written, read back in the
results table's long format for the report's cost tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from mergeflow.errors import MergeflowError
from mergeflow.evaluation.results import COLUMNS, result_rows
from mergeflow.evaluation.timings import (
    MEDIAN_SECONDS_PER_STEP,
    SECONDS_PER_INPUT,
    read_timings,
    timing_rows,
    with_timings,
    write_timings,
)
from mergeflow.reporting.adaptation_report import step_table
from mergeflow.reporting.mad_report import cost_table


def _cells(markdown: str) -> str:
    """A Markdown table with its padding removed, to match rows as one line."""
    return re.sub(r" +", " ", markdown)


def test_a_timing_file_round_trips_as_results_rows_and_reads_as_a_dvc_metric(tmp_path: Path) -> None:
    path = tmp_path / "timings" / "evaluate_static.json"
    write_timings(path, [timing_rows("vision8", "ties", "none", SECONDS_PER_INPUT, 0.002),
                         timing_rows("vision8", "tall_ta", "mad", SECONDS_PER_INPUT, 0.004)])
    assert json.loads(path.read_text()) == {"vision8": {"tall_ta/mad": {"seconds_per_input": 0.004},
                                                       "ties/none": {"seconds_per_input": 0.002}}}
    table = read_timings([path])
    assert tuple(table.columns) == COLUMNS and set(table["task"]) == {"all"}
    assert list(zip(table["method"], table["router"], table["value"], strict=True)) == [("tall_ta", "mad", 0.004), ("ties", "none", 0.002)]
    assert not list(tmp_path.glob("timings/.*"))  # written atomically: no temp file left


def test_a_stage_that_timed_nothing_still_writes_its_declared_file(tmp_path: Path) -> None:
    path = tmp_path / "evaluate_routed@tall_ta.json"
    write_timings(path, [])
    assert json.loads(path.read_text()) == {} and read_timings([path]).empty


def test_unknown_timing_metrics_and_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(MergeflowError, match="unknown timing metric"):
        timing_rows("vision8", "ties", "none", "accuracy", 0.5)
    with pytest.raises(MergeflowError, match="cannot read timings"):
        read_timings([tmp_path / "missing.json"])


def test_timings_join_the_results_for_the_cost_tables_and_may_not_repeat_a_row() -> None:
    results = pd.concat([result_rows("vision8", "ties", "none", "accuracy", {"a": 0.5, "b": 0.7}),
                         result_rows("vision8", "ties", "none", "peak_memory_bytes", {"all": 2e6})], ignore_index=True)
    timings = timing_rows("vision8", "ties", "none", SECONDS_PER_INPUT, 0.0015)
    joined = with_timings(results, timings)
    assert "| ties (task-unknown, one model) | yes | 1.500 | 2.0 | 60.0 |" in _cells(cost_table(joined, routers=["mad"]))
    assert "ties" not in cost_table(results, routers=["mad"])  # without its timing, a model has no cost row
    with pytest.raises(MergeflowError, match="repeat rows"):
        with_timings(joined, timings)


def test_the_step_table_reads_adapt_timings_and_marks_a_missing_one() -> None:
    steps = pd.DataFrame({"method": ["adamerging", "adarank_ta"], "steps": [2, 2], "validation_accuracy": ["{}", "{}"]})
    timed = pd.concat([timing_rows("vision8", "adamerging", "none", MEDIAN_SECONDS_PER_STEP, 0.02),
                       timing_rows("vision8", "adarank_ta", "none", MEDIAN_SECONDS_PER_STEP, 0.05)], ignore_index=True)
    table = _cells(step_table(steps, timed))
    assert "| adamerging | 20.0 | 1.00 | 2 |" in table and "| adarank_ta | 50.0 | 2.50 | 2 |" in table
    assert "| adarank_ta | - | - | 2 |" in _cells(step_table(steps, timed.iloc[:0]))
