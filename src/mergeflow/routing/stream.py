"""The task-unknown test stream: every task's test inputs mixed in one seeded order, served in fixed-size batches.

Mixing matters: group-batch inference is only exercised (and only costs what it costs) when a batch holds inputs
of several tasks. Scores are computed per true task, so they are comparable with the task-known table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from mergeflow.errors import MergeflowError
from mergeflow.routing.served import Prediction


@dataclass(frozen=True)
class TestStream:
    """All test inputs in serving order: images (uint8 NHWC), labels, true task index, index within the task's split."""

    images: torch.Tensor
    labels: torch.Tensor
    tasks: torch.Tensor
    positions: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def mixed_stream(splits: Sequence[tuple[torch.Tensor, torch.Tensor]], generator: torch.Generator) -> TestStream:
    """Concatenate each task's (images, labels) and shuffle them together with ``generator``."""
    if not splits:
        raise MergeflowError("no test splits to serve")
    images = torch.cat([images for images, _ in splits])
    labels = torch.cat([labels for _, labels in splits])
    tasks = torch.cat([torch.full((len(labels),), t, dtype=torch.int64) for t, (_, labels) in enumerate(splits)])
    positions = torch.cat([torch.arange(len(labels)) for _, labels in splits])
    order = torch.randperm(len(labels), generator=generator)
    return TestStream(images[order], labels[order], tasks[order], positions[order])


def serve(
    predict: Callable[[torch.Tensor, torch.Tensor], Prediction], stream: TestStream, batch_size: int, description: str
) -> tuple[Prediction, float]:
    """Run ``predict(images, true_tasks)`` over the stream in batches; (all predictions, wall seconds).

    ``predict`` receives the true tasks only so oracle routing and static baselines can use them; a routed
    server ignores them.
    """
    if batch_size < 1:
        raise MergeflowError(f"batch size must be >= 1, got {batch_size}")
    tasks, classes = [], []
    start = time.perf_counter()
    for first in tqdm(range(0, len(stream), batch_size), desc=description, unit="batch", leave=False):
        batch = slice(first, first + batch_size)
        prediction = predict(stream.images[batch], stream.tasks[batch])
        tasks.append(prediction.tasks)
        classes.append(prediction.classes)
    seconds = time.perf_counter() - start
    return Prediction(torch.cat(tasks), torch.cat(classes)), seconds


def correct(stream: TestStream, prediction: Prediction) -> torch.Tensor:
    """(N,) bool: served as the right task AND the right class (a mis-routed input is wrong, whatever its class)."""
    return (prediction.tasks == stream.tasks) & (prediction.classes == stream.labels)


def per_task_scores(stream: TestStream, prediction: Prediction, task_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """{"accuracy": {task: ...}, "routing_accuracy": {task: ...}} over each true task's inputs."""
    right = correct(stream, prediction)
    routed = prediction.tasks == stream.tasks
    scores: dict[str, dict[str, float]] = {"accuracy": {}, "routing_accuracy": {}}
    for index, name in enumerate(task_names):
        rows = stream.tasks == index
        if not bool(rows.any()):
            raise MergeflowError(f"task {name!r} has no inputs in the test stream")
        scores["accuracy"][name] = float(right[rows].float().mean())
        scores["routing_accuracy"][name] = float(routed[rows].float().mean())
    return scores
