"""Score many routings of one test stream with one forward pass per (input, task model) pair.

Serving the stream once per router (as :class:`~mergeflow.routing.served.RoutedClassifier` does, batch by batch)
runs every input through the routing model and through its routed task's model again for every router, although
an input's class depends only on which task model it reaches. Routers mostly agree, so the union of the pairs they
ask for is little more than one pass: each task's model is built once and run once over every input any router
sends to it. The predictions are those of serving (up to float rounding of other batch shapes); the seconds per
input of real group-batch serving are measured by serving one router end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from mergeflow.errors import MergeflowError
from mergeflow.routing.served import Prediction


def predictions_by_routing(
    assignments: Mapping[str, torch.Tensor],
    classify: Callable[[int, torch.Tensor], torch.Tensor],
    tasks: int,
    batch_size: int,
) -> dict[str, Prediction]:
    """{name: Prediction} for each (N,) task assignment, where ``classify(task, rows)`` returns the class that task's
    model predicts for the stream's inputs at ``rows`` (int64 indices, at most ``batch_size`` per call)."""
    if not assignments:
        raise MergeflowError("no routing to score")
    if batch_size < 1:
        raise MergeflowError(f"batch size must be >= 1, got {batch_size}")
    sizes = {int(a.shape[0]) for a in assignments.values()}
    if len(sizes) != 1 or any(a.dim() != 1 or a.is_floating_point() for a in assignments.values()):
        raise MergeflowError("every assignment must be an integer (N,) tensor over the same N inputs")
    n = sizes.pop()
    stacked = torch.stack([a.to(torch.int64) for a in assignments.values()])
    if bool(((stacked < 0) | (stacked >= tasks)).any()):
        raise MergeflowError(f"assignments must be task indices in [0, {tasks})")
    table = torch.full((n, tasks), -1, dtype=torch.int64)
    for task in range(tasks):
        rows = torch.nonzero((stacked == task).any(dim=0)).flatten()
        for chunk in torch.split(rows, batch_size):
            table[chunk, task] = classify(task, chunk).to(torch.int64)
    positions = torch.arange(n)
    return {name: Prediction(a.to(torch.int64), table[positions, a.to(torch.int64)]) for name, a in assignments.items()}
