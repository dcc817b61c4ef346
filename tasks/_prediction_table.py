"""Per-input predictions of the task-unknown evaluations as a Parquet table (what the analyses and report read)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from mergeflow.atomic import atomic_path
from mergeflow.routing.served import Prediction
from mergeflow.routing.stream import TestStream, correct

COLUMNS = ("router", "task", "position", "label", "served_task", "predicted_class", "correct")


def prediction_rows(router: str, stream: TestStream, prediction: Prediction, tasks: Sequence[str]) -> pd.DataFrame:
    """One row per input, in serving order."""
    return pd.DataFrame({
        "router": router,
        "task": [tasks[i] for i in stream.tasks.tolist()],
        "position": stream.positions.numpy(),
        "label": stream.labels.numpy(),
        "served_task": [tasks[i] for i in prediction.tasks.tolist()],
        "predicted_class": prediction.classes.numpy(),
        "correct": correct(stream, prediction).numpy(),
    }, columns=list(COLUMNS))


def write_predictions(path: str | os.PathLike[str], rows: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        rows.to_parquet(tmp, index=False)
