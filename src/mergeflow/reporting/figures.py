"""PNG figures for the report (matplotlib, headless Agg backend): a labelled heatmap is all the MAD report needs."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from mergeflow.atomic import atomic_path  # noqa: E402


def heatmap_png(
    path: str | os.PathLike[str],
    values: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    title: str,
    colorbar: str,
    number_format: str | None = "{:.2f}",
    row_label: str = "",
    column_label: str = "",
) -> None:
    """A heatmap with every cell's value written in it (``number_format`` None: no numbers, for wide maps), saved
    atomically as PNG (deterministic: no timestamps)."""
    width = 1.1 + 0.75 * len(columns) if number_format is not None else 9.0
    figure, axes = plt.subplots(figsize=(width, 1.0 + 0.6 * len(rows)), dpi=120)
    image = axes.imshow(values, cmap="viridis", aspect="auto")
    step = max(1, len(columns) // 16)  # at most ~16 column labels
    axes.set_xticks(range(0, len(columns), step), labels=list(columns)[::step], rotation=45, ha="right")
    axes.set_yticks(range(len(rows)), labels=list(rows))
    axes.set_xlabel(column_label)
    axes.set_ylabel(row_label)
    axes.set_title(title)
    finite = values[np.isfinite(values)]
    middle = (finite.max() + finite.min()) / 2 if finite.size else 0.0
    if number_format is not None:
        for i in range(len(rows)):
            for j in range(len(columns)):
                value = values[i, j]
                axes.text(j, i, number_format.format(value), ha="center", va="center", fontsize=7,
                          color="black" if value > middle else "white")
    figure.colorbar(image, ax=axes, label=colorbar)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(figure)


def lines_png(
    path: str | os.PathLike[str], x_labels: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str, ylabel: str
) -> None:
    """One line per series over categorical x positions (e.g. layers), saved atomically as PNG."""
    figure, axes = plt.subplots(figsize=(max(6.0, 0.35 * len(x_labels)), 4.0), dpi=120)
    for name, values in series.items():
        axes.plot(range(len(x_labels)), list(values), marker="o", markersize=3, label=name)
    step = max(1, len(x_labels) // 24)
    axes.set_xticks(range(0, len(x_labels), step), labels=list(x_labels)[::step], rotation=60, ha="right", fontsize=7)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(figure)
