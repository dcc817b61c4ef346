"""The results table contract: names checked, parts collected deterministically, duplicates refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mergeflow.errors import MergeflowError
from mergeflow.evaluation.results import COLUMNS, collect_parts, pivot, result_rows, write_part, write_table


def test_rows_follow_the_contract() -> None:
    rows = result_rows("vision8", "finetuned", "oracle", "accuracy", {"a": 0.5, "b": 1.0})
    assert tuple(rows.columns) == COLUMNS and len(rows) == 2
    with pytest.raises(MergeflowError, match="unknown method"):
        result_rows("vision8", "my_merge", "oracle", "accuracy", {"a": 0.5})
    with pytest.raises(MergeflowError, match="unknown router"):
        result_rows("vision8", "ties", "magic", "accuracy", {"a": 0.5})


def test_collect_write_and_summarise(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    write_part(parts / "pretrained.parquet", result_rows("s", "pretrained", "oracle", "accuracy", {"a": 0.1, "b": 0.3}))
    write_part(parts / "finetuned" / "a.parquet", result_rows("s", "finetuned", "oracle", "accuracy", {"a": 0.9}))
    table = collect_parts(parts)
    assert len(table) == 3
    write_table(table, tmp_path / "r.parquet", tmp_path / "r.csv", tmp_path / "m.json")
    assert pd.read_parquet(tmp_path / "r.parquet").equals(pd.read_csv(tmp_path / "r.csv"))
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["s"]["pretrained/oracle"]["avg_accuracy"] == pytest.approx(0.2)
    assert pivot(table).loc[("s", "finetuned", "oracle"), "average"] == pytest.approx(0.9)


def test_duplicate_rows_are_refused(tmp_path: Path) -> None:
    rows = result_rows("s", "pretrained", "oracle", "accuracy", {"a": 0.1})
    write_part(tmp_path / "one.parquet", rows)
    write_part(tmp_path / "two.parquet", rows)
    with pytest.raises(MergeflowError, match="two parts"):
        collect_parts(tmp_path)
