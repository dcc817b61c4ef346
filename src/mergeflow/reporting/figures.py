"""PNG figures for the report (matplotlib, headless Agg backend): a labelled heatmap is all the MAD report needs."""

from __future__ import annotations

import os
from collections.abc import Sequence

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
    number_format: str = "{:.2f}",
    row_label: str = "",
    column_label: str = "",
) -> None:
    """A heatmap with every cell's value written in it, saved atomically as PNG (deterministic: no timestamps)."""
    figure, axes = plt.subplots(figsize=(1.1 + 0.75 * len(columns), 1.0 + 0.6 * len(rows)), dpi=120)
    image = axes.imshow(values, cmap="viridis", aspect="auto")
    axes.set_xticks(range(len(columns)), labels=list(columns), rotation=45, ha="right")
    axes.set_yticks(range(len(rows)), labels=list(rows))
    axes.set_xlabel(column_label)
    axes.set_ylabel(row_label)
    axes.set_title(title)
    finite = values[np.isfinite(values)]
    middle = (finite.max() + finite.min()) / 2 if finite.size else 0.0
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
