"""Hyperparameter selection on validation data (docs/methods.md §14): a ``<name>_grid`` in a method's block.

TALL's lambda is chosen per task (its masks are per task, as the authors select it); every other grid is chosen once
for all tasks, the value with the highest *average* validation score over the tasks (the papers' practice for the
TA/TIES/TSV-M/Iso/CART scale and Consensus' lambda). Ties go to the earlier grid value. The scoring is a callable, so
the selection logic is testable without files or models; stages pass one that evaluates a candidate on the task's
validation split. Test data never reaches this module.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

from mergeflow.declarations.common import check_grids
from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank
from mergeflow.merging.common import StateDict, TaskVectors
from mergeflow.merging.registry import Value, check_meaningful, get_method, require_effect, resolve_hyperparameters, run_method
from mergeflow.merging.scaled import ScaledMerge, exactly_rescalable
from mergeflow.runtime.device import CPU

V = TypeVar("V", bound=Hashable)

# Hyperparameters a method accepts as {task: value}, so their ``<name>_grid`` is chosen per task. Only TALL's lambda:
# its masks are per task, and the authors select lambda per task on validation. Any other grid is one shared value.
PER_TASK_HYPERPARAMETERS: dict[str, tuple[str, ...]] = {"tall_ta": ("lam",), "tall_ties": ("lam",)}
@dataclass(frozen=True)
class Selection(Generic[V]):
    """The chosen value per task and every score seen (kept for the artifact's metadata and the stage log)."""

    chosen: dict[str, V]
    scores: dict[str, dict[V, float]]


@dataclass(frozen=True)
class SharedSelection(Generic[V]):
    """One value for every task, chosen by the average over tasks of ``scores[task][value]`` (kept for the log)."""

    chosen: V
    scores: dict[str, dict[V, float]]

    @property
    def averages(self) -> dict[V, float]:
        """The mean score over the tasks of each grid value, in grid order."""
        values = list(next(iter(self.scores.values())))
        return {value: sum(scores[value] for scores in self.scores.values()) / len(self.scores) for value in values}


def _grid_scores(tasks: Sequence[str], grid: Sequence[V], score: Callable[[str, V], float]) -> dict[str, dict[V, float]]:
    """``score(task, value)`` for every pair, the grid as the outer loop (a scorer that builds one candidate per
    value, e.g. a mask bank, can then cache just the current candidate)."""
    if not tasks:
        raise MergeflowError("no tasks to select hyperparameters for")
    if not grid:
        raise MergeflowError("empty grid: give at least one candidate value")
    if len(set(grid)) != len(grid):
        raise MergeflowError(f"grid has duplicate values: {list(grid)}")
    scores: dict[str, dict[V, float]] = {task: {} for task in tasks}
    for value in grid:
        for task in tasks:
            scores[task][value] = float(score(task, value))
    return scores


def _best(grid: Sequence[V], rating: Callable[[V], float]) -> V:
    """The grid value with the highest rating; ties go to the earlier value."""
    return max(grid, key=lambda value: (rating(value), -grid.index(value)))


def select_per_task(tasks: Sequence[str], grid: Sequence[V], score: Callable[[str, V], float]) -> Selection[V]:
    """For each task, the grid value with the highest ``score(task, value)``; ties go to the earlier grid value."""
    scores = _grid_scores(tasks, grid, score)
    return Selection(chosen={task: _best(grid, scores[task].__getitem__) for task in tasks}, scores=scores)


def select_shared(tasks: Sequence[str], grid: Sequence[V], score: Callable[[str, V], float]) -> SharedSelection[V]:
    """One grid value for all tasks: the highest mean of ``score(task, value)`` over the tasks; ties to the earlier."""
    scores = _grid_scores(tasks, grid, score)
    averages = SharedSelection(chosen=grid[0], scores=scores).averages
    return SharedSelection(chosen=_best(grid, averages.__getitem__), scores=scores)


def describe(selection: Selection[V] | SharedSelection[V], name: str) -> list[str]:
    """Readable lines: the chosen value(s) and the validation score of every candidate (per task, and the mean)."""
    if isinstance(selection, SharedSelection):
        means = ", ".join(f"{value}: {score:.4f}" for value, score in selection.averages.items())
        lines = [f"{name} = {selection.chosen} for every task (mean validation {means})"]
        for task, scores in selection.scores.items():
            lines.append(f"{task}: validation " + ", ".join(f"{value}: {score:.4f}" for value, score in scores.items()))
        return lines
    lines = []
    for task, chosen in selection.chosen.items():
        candidates = ", ".join(f"{value}: {score:.4f}" for value, score in selection.scores[task].items())
        lines.append(f"{task}: {name} = {chosen} (validation {candidates})")
    return lines


def is_per_task(method: str, name: str) -> bool:
    """Whether ``<name>_grid`` of ``method`` is chosen per task (TALL's lambda) rather than once for all tasks."""
    return name in PER_TASK_HYPERPARAMETERS.get(method, ())


Candidate = StateDict | MaskBank


def _candidates(method: str, task_vectors: TaskVectors, hyperparameters: Mapping[str, Value], name: str,
                device: torch.device = CPU) -> Callable[[Value], Candidate]:
    """value -> the method's output with ``name`` = value, the latest one cached (the grid is the outer loop).

    A ``scale`` grid of a method with exact scale parts (``MergeMethod.scale_parts``) costs one merge, rescaled per
    value: identical tensors to rerunning the method, which an SVD method would pay once per value.
    """
    spec = get_method(method)
    on_device = spec.device_arguments(device)
    rescale = name == "scale" and spec.scale_parts is not None and exactly_rescalable(task_vectors)
    parts: list[ScaledMerge] = []  # built on first use, after the grid has been checked
    latest: dict[Value, Candidate] = {}

    def build(value: Value) -> Candidate:
        resolved = resolve_hyperparameters(method, {**hyperparameters, name: value})
        if not rescale:
            return spec.function(task_vectors, **resolved, **on_device)
        if not parts:
            assert spec.scale_parts is not None
            parts.append(spec.scale_parts(task_vectors, **{key: v for key, v in resolved.items() if key != "scale"}, **on_device))
        scale = resolved["scale"]
        assert isinstance(scale, float)
        return parts[0].at(scale)

    def candidate(value: Value) -> Candidate:
        if value not in latest:
            latest.clear()
            latest[value] = build(value)
        return latest[value]

    return candidate


def merge_selecting(
    method: str,
    task_vectors: TaskVectors,
    hyperparameters: Mapping[str, Value],
    grids: Mapping[str, Sequence[Value]],
    score: Callable[[Candidate, str], float],
    *,
    device: torch.device = CPU,
) -> tuple[Candidate, dict[str, Selection[Value] | SharedSelection[Value]]]:
    """Run ``method``; a hyperparameter given as a grid is chosen on validation by ``score(candidate, task)``.

    ``score`` sees the method's output for one grid value and one task (a stage evaluates that task's model or
    reconstruction on its validation split). A per-task grid ends with the method run once with {task: chosen
    value}; a shared grid with the candidate of the chosen value. Without grids this is ``run_method`` and
    ``score`` is never called. An SVD method runs its SVDs on ``device`` (``run_method``).
    """
    if not grids:
        return run_method(method, task_vectors, hyperparameters, device=device), {}
    check_grids(method, grids, hyperparameters)
    ((name, grid),) = grids.items()
    for value in grid:  # every candidate must be meaningful (declared rules), before any merge runs
        check_meaningful(method, len(task_vectors), {**hyperparameters, name: value})
    result, selections = _select(method, task_vectors, hyperparameters, name, grid, score, device)
    require_effect(method, result)
    return result, selections


def _select(method: str, task_vectors: TaskVectors, hyperparameters: Mapping[str, Value], name: str, grid: Sequence[Value],
            score: Callable[[Candidate, str], float], device: torch.device) -> tuple[Candidate, dict[str, Selection[Value] | SharedSelection[Value]]]:
    """The grid search of :func:`merge_selecting`: the chosen candidate and the selection."""
    tasks, candidate = list(task_vectors), _candidates(method, task_vectors, hyperparameters, name, device)

    def scored(task: str, value: Value) -> float:
        return score(candidate(value), task)

    if not is_per_task(method, name):
        shared = select_shared(tasks, list(grid), scored)
        return candidate(shared.chosen), {name: shared}
    selection = select_per_task(tasks, list(grid), scored)
    resolved = resolve_hyperparameters(method, hyperparameters)
    spec = get_method(method)
    return spec.function(task_vectors, **{**resolved, name: selection.chosen}, **spec.device_arguments(device)), {name: selection}
