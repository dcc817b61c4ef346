"""What the report modules share: Markdown tables from DataFrames, percent formatting, and the figure specs a
report hands to the stage that renders them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Heatmap:
    """A figure the report links to: values (rows x columns) and its labels."""

    name: str
    values: np.ndarray
    rows: list[str]
    columns: list[str]
    title: str
    colorbar: str
    number_format: str | None = "{:.2f}"
    row_label: str = ""
    column_label: str = ""


@dataclass(frozen=True)
class Lines:
    """A line chart over categorical x positions: one line per series."""

    name: str
    x_labels: list[str]
    series: dict[str, list[float]]
    title: str
    ylabel: str


@dataclass
class Report:
    """A report section: its Markdown and the figures it links to (``figures/NAME.png``)."""

    markdown: str
    figures: list[Heatmap | Lines] = field(default_factory=list)


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


def per_task(rows: pd.DataFrame, tasks: Sequence[str], keys: Sequence[str], value: str = "value") -> pd.DataFrame:
    """One row per ``keys`` combination, one column per task (percent) and the average."""
    wide = rows.pivot_table(index=list(keys), columns="task", values=value, aggfunc="first", sort=False)
    wide = wide.reindex(columns=list(tasks))
    wide["avg"] = wide.mean(axis=1)
    return wide


def format_wide(wide: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    out = wide.reset_index()
    for column in [*tasks, "avg"]:
        out[column] = out[column].map(pct)
    return out
