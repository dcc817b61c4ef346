"""The results table: long format ``suite, method, router, task, metric, value``.

Each evaluation stage writes its own part (a small Parquet file under ``reports/parts/``); the
``results`` stage concatenates the parts into ``reports/results.parquet`` (+ CSV twin) and
``reports/metrics.json``. Parts keep DVC's rule of one writer per file while the table stays one contract.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from mergeflow.atomic import atomic_path, write_text_atomic
from mergeflow.declarations.adaptation import ADAPT_DECLARATIONS
from mergeflow.declarations.dynamic import DYNAMIC_DECLARATIONS
from mergeflow.declarations.lora import TABLE_NAMES as LORA_TABLE_NAMES
from mergeflow.declarations.merging import MERGE_DECLARATIONS
from mergeflow.declarations.routing import ROUTER_NAMES
from mergeflow.errors import MergeflowError

COLUMNS = ("suite", "method", "router", "task", "metric", "value")
# Every name a row may carry, from the methods' declarations: the base rows, each static and adaptive method, the
# LoRA-expert and trained per-input methods' table names; routers: task-known, one model, each task router, theirs.
METHODS: tuple[str, ...] = tuple(dict.fromkeys((
    "pretrained", "finetuned", *MERGE_DECLARATIONS, *ADAPT_DECLARATIONS,
    *(method for method, _ in LORA_TABLE_NAMES.values()), *(d.method for d in DYNAMIC_DECLARATIONS.values()))))
ROUTERS: tuple[str, ...] = tuple(dict.fromkeys((
    "oracle", "none", *ROUTER_NAMES, *(router for _, router in LORA_TABLE_NAMES.values()),
    *(d.router for d in DYNAMIC_DECLARATIONS.values()))))


def result_rows(suite: str, method: str, router: str, metric: str, per_task: dict[str, float]) -> pd.DataFrame:
    """Rows for one (suite, method, router, metric), one per task; names are checked against the contract."""
    if method not in METHODS:
        raise MergeflowError(f"unknown method name {method!r} for the results table; known: {', '.join(METHODS)}")
    if router not in ROUTERS:
        raise MergeflowError(f"unknown router name {router!r} for the results table; known: {', '.join(ROUTERS)}")
    return pd.DataFrame(
        [(suite, method, router, task, metric, float(value)) for task, value in per_task.items()], columns=list(COLUMNS)
    )


def write_part(path: str | os.PathLike[str], rows: pd.DataFrame) -> None:
    """Write one stage's rows atomically."""
    if tuple(rows.columns) != COLUMNS:
        raise MergeflowError(f"results part must have columns {COLUMNS}, got {tuple(rows.columns)}")
    with atomic_path(path) as tmp:
        rows.to_parquet(tmp, index=False)


def collect_parts(parts_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Concatenate every part under ``parts_dir`` (sorted, deterministic order); duplicate keys are an error."""
    files = sorted(Path(parts_dir).rglob("*.parquet"))
    if not files:
        raise MergeflowError(f"{parts_dir}: no result parts; run the evaluation stages first")
    table = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    key = list(COLUMNS[:-1])
    duplicated = table[table.duplicated(key, keep=False)]
    if len(duplicated):
        raise MergeflowError(f"results: the same row comes from two parts: {duplicated.head(3).to_dict('records')}")
    return table.sort_values(key, kind="stable").reset_index(drop=True)


def summarise(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """metrics.json content: suite -> "method/router" -> {"avg_<metric>": mean over tasks, "<task>/<metric>": value}."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for (suite, method, router), group in table.groupby(["suite", "method", "router"], sort=True):
        entry: dict[str, float] = {}
        for metric, rows in group.groupby("metric", sort=True):
            entry[f"avg_{metric}"] = round(float(rows["value"].mean()), 6)
            entry.update({f"{task}/{metric}": round(float(v), 6) for task, v in zip(rows["task"], rows["value"], strict=True)})
        summary.setdefault(str(suite), {})[f"{method}/{router}"] = entry
    return summary


def write_table(table: pd.DataFrame, parquet_path: str | os.PathLike[str], csv_path: str | os.PathLike[str],
                metrics_path: str | os.PathLike[str]) -> None:
    """Write the collected table (Parquet + CSV twin) and metrics.json, each atomically."""
    with atomic_path(parquet_path) as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    write_text_atomic(metrics_path, json.dumps(summarise(table), indent=2, sort_keys=True) + "\n")


def pivot(table: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """One row per (suite, method, router), one column per task, plus the task average: the table the README shows."""
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise MergeflowError(f"not a results table: columns {missing} missing (a results table has {', '.join(COLUMNS)})")
    if not pd.api.types.is_numeric_dtype(table["value"]):
        raise MergeflowError(f"not a results table: its value column holds {table['value'].dtype}, not numbers")
    rows = table[table["metric"] == metric]
    if rows.empty:
        raise MergeflowError(f"the results table has no {metric!r} rows")
    wide = rows.pivot_table(index=["suite", "method", "router"], columns="task", values="value", aggfunc="first")
    wide["average"] = wide.mean(axis=1)
    return wide
