"""Per-task hyperparameter selection on validation data (TALL's lambda, reference/methods.md §5).

The scoring is a callable, so the selection logic is testable without files or models; stages pass one that
evaluates a candidate on the task's validation split. Test data never reaches this module.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank
from mergeflow.merging.common import StateDict, TaskVectors
from mergeflow.merging.registry import Value, get_method, resolve_hyperparameters, run_method

V = TypeVar("V", bound=Hashable)

# Hyperparameters a method accepts as {task: value}, so params.yaml may give a ``<name>_grid`` to choose per task.
# Only TALL's lambda: its masks are per task, and the authors select lambda per task on validation.
PER_TASK_HYPERPARAMETERS: dict[str, tuple[str, ...]] = {"tall_ta": ("lam",), "tall_ties": ("lam",)}
GRID_SUFFIX = "_grid"


@dataclass(frozen=True)
class Selection(Generic[V]):
    """The chosen value per task and every score seen (kept for the artifact's metadata and the stage log)."""

    chosen: dict[str, V]
    scores: dict[str, dict[V, float]]


def select_per_task(tasks: Sequence[str], grid: Sequence[V], score: Callable[[str, V], float]) -> Selection[V]:
    """For each task, the grid value with the highest ``score(task, value)``; ties go to the earlier grid value.

    The grid is the outer loop, so a scorer that builds one candidate per value (e.g. a mask bank) can cache
    just the current candidate.
    """
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
    chosen = {task: max(grid, key=lambda value, task=task: (scores[task][value], -grid.index(value))) for task in tasks}
    return Selection(chosen=chosen, scores=scores)


def describe(selection: Selection[V], name: str) -> list[str]:
    """One readable line per task: the chosen value and the validation score of every candidate."""
    lines = []
    for task, chosen in selection.chosen.items():
        candidates = ", ".join(f"{value}: {score:.4f}" for value, score in selection.scores[task].items())
        lines.append(f"{task}: {name} = {chosen} (validation {candidates})")
    return lines


def check_per_task_grids(method: str, grids: Mapping[str, object]) -> None:
    """Refuse a grid for a hyperparameter the method cannot take per task (it would silently mean one value)."""
    allowed = PER_TASK_HYPERPARAMETERS.get(method, ())
    for name in grids:
        if name not in allowed:
            options = ", ".join(f"{m}.{h}{GRID_SUFFIX}" for m, hs in PER_TASK_HYPERPARAMETERS.items() for h in hs)
            raise MergeflowError(f"{method} takes {name} as one value for every task; per-task grids exist only for {options}")


def merge_selecting_per_task(
    method: str,
    task_vectors: TaskVectors,
    hyperparameters: Mapping[str, Value],
    grids: Mapping[str, Sequence[Value]],
    score: Callable[[StateDict | MaskBank, str], float],
) -> tuple[StateDict | MaskBank, dict[str, Selection[Value]]]:
    """Run ``method``; a hyperparameter given as a grid is chosen per task by ``score(candidate, task)``.

    ``score`` sees the method's output for one grid value and one task (a stage evaluates that task's
    reconstruction on its validation split). The final result is the method run once with {task: chosen value}.
    Without grids this is ``run_method`` and ``score`` is never called.
    """
    if not grids:
        return run_method(method, task_vectors, hyperparameters), {}
    check_per_task_grids(method, grids)
    if len(grids) > 1:
        raise MergeflowError(f"{method}: one per-task grid at a time, got {', '.join(grids)}")
    ((name, grid),) = grids.items()
    current: dict[Value, StateDict | MaskBank] = {}

    def scored(task: str, value: Value) -> float:
        if value not in current:
            current.clear()
            current[value] = run_method(method, task_vectors, {**hyperparameters, name: value})
        return score(current[value], task)

    selection = select_per_task(list(task_vectors), list(grid), scored)
    resolved = resolve_hyperparameters(method, hyperparameters)
    result = get_method(method).function(task_vectors, **{**resolved, name: selection.chosen})
    return result, {name: selection}
