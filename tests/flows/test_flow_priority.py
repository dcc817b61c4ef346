"""Which ready stage starts first: the longest chain of work behind it, timed by the flow's previous runs (recorded
in the log folder), so a long stage does not wait behind short ones and then run alone; a first run keeps DVC's
order, and an unreadable record is a warning, not a failure."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from flowkit import run_flow, toy_project

from flows.dvc_graph import plan
from flows.pipeline import DEFAULT_LOG_DIR
from flows.priority import DURATIONS_FILE, load_durations, path_lengths

pytestmark = pytest.mark.pipeline

TWO_INDEPENDENT = """\
stages:
  one:
    cmd: python -c "open('one.txt', 'w').write(open('input.txt').read())"
    deps: [input.txt]
    outs: [one.txt]
  two:
    cmd: python -c "open('two.txt', 'w').write(open('input.txt').read())"
    deps: [input.txt]
    outs: [two.txt]
"""


def test_path_length_is_a_stage_plus_the_longest_chain_after_it() -> None:
    order = ["a", "b", "c", "side"]
    upstream = {"a": [], "b": ["a"], "c": ["a", "b"], "side": []}
    lengths = path_lengths(order, upstream, {"a": 1.0, "b": 2.0, "c": 4.0, "side": 5.0})
    assert lengths == {"a": 7.0, "b": 6.0, "c": 4.0, "side": 5.0}
    assert path_lengths(order, upstream, {}) == dict.fromkeys(order, 0.0)  # never timed: all equal


def test_an_unreadable_record_is_a_warning(tmp_path: Path) -> None:
    assert load_durations(tmp_path / "missing.json") == ({}, "")
    (tmp_path / "bad.json").write_text("{not json")
    durations, warning = load_durations(tmp_path / "bad.json")
    assert durations == {} and "ignoring" in warning and "DVC's order" in warning


def _first_started(summary: dict) -> str:
    return min(summary["stages"], key=lambda row: row["started"])["stage"]


def test_the_stage_with_the_longest_recorded_chain_starts_first(flows_pipeline: ModuleType, tmp_path: Path) -> None:
    toy = toy_project(tmp_path / "two", stages=TWO_INDEPENDENT)
    dvc_first, dvc_second = plan(toy).order
    record = toy / DEFAULT_LOG_DIR / DURATIONS_FILE

    state, summary = run_flow(flows_pipeline, toy, max_concurrent=1)  # nothing recorded yet: DVC's order
    assert state.is_completed() and _first_started(summary) == dvc_first
    assert set(json.loads(record.read_text())) == {"one", "two"}  # this run's durations, for the next one

    record.write_text(json.dumps({dvc_first: 1.0, dvc_second: 100.0}))
    (toy / "input.txt").write_text("changed")
    state, summary = run_flow(flows_pipeline, toy, max_concurrent=1)
    assert state.is_completed() and _first_started(summary) == dvc_second

    record.write_text("[corrupt")
    (toy / "input.txt").write_text("changed again")
    state, summary = run_flow(flows_pipeline, toy, max_concurrent=1)
    assert state.is_completed() and _first_started(summary) == dvc_first
    assert set(json.loads(record.read_text())) == {"one", "two"}  # rewritten whole
