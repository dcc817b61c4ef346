"""A real vision suite in params.yaml: each task's dataset by reference, checked without torch or ``datasets``.

``suite.source: real`` turns ``suite.tasks`` into names of one's own choosing, each defined in ``suite.datasets``:

- a TALL task name (``eurosat``, ``sun397``, ...: :data:`mergeflow.data.sources.tasks_tall.TALL_TASKS`): its public
  reference, CLIP templates and class names;
- or a mapping: the keys of a :class:`~mergeflow.data.sources.reference.DatasetRef` (``kind``, ``path``, ``id``, ...)
  plus optional ``templates`` (zero-shot prompts with one ``{}``; default ``a photo of a {}.``), ``class_names`` (only
  where the dataset carries none) and ``num_classes`` (a check).

``suite.max_examples`` caps each split (the first N rows of the split after the validation carve) for small runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mergeflow.data.sources.real_task import RealTask
from mergeflow.data.sources.reference import DatasetRef
from mergeflow.data.sources.tasks_tall import TALL_TASKS
from mergeflow.errors import MergeflowError

DEFAULT_TEMPLATES = ("a photo of a {}.",)
TASK_KEYS = ("templates", "class_names", "num_classes")  # a mapping's keys that are the task's, not the reference's


def real_task(task: str, entry: str | Mapping[str, Any]) -> RealTask:
    """The task ``task`` of a real suite from its ``suite.datasets`` entry; one MergeflowError naming the key."""
    where = f"suite.datasets.{task}"
    try:
        if isinstance(entry, str):
            if entry not in TALL_TASKS:
                raise MergeflowError(f"unknown TALL task {entry!r}; known: {', '.join(TALL_TASKS)} (or give a dataset reference mapping)")
            return dataclasses.replace(TALL_TASKS[entry], name=task)
        if not isinstance(entry, Mapping):
            raise MergeflowError(f"expected a TALL task name or a dataset reference mapping, got {entry!r}")
        reference = {key: value for key, value in entry.items() if key not in TASK_KEYS}
        templates = entry.get("templates", DEFAULT_TEMPLATES)
        names = entry.get("class_names")
        count = entry.get("num_classes")
        if isinstance(templates, str) or not isinstance(templates, (list, tuple)) or not all(isinstance(t, str) for t in templates):
            raise MergeflowError(f"`templates` must be a list of prompts with one '{{}}' each, got {templates!r}")
        if names is not None and (isinstance(names, str) or not isinstance(names, (list, tuple))
                                  or not all(isinstance(n, str) for n in names)):
            raise MergeflowError(f"`class_names` must be a list of names, got {names!r}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise MergeflowError(f"`num_classes` must be a positive integer, got {count!r}")
        ref = DatasetRef.from_dict(reference)
        if ref.modality != "image":
            raise MergeflowError("a real vision suite needs image data: `text_columns` does not apply (set `image_column`)")
        return RealTask(task, task, ref, tuple(templates), "mergeflow", tuple(names) if names else None, count)
    except MergeflowError as exc:
        raise MergeflowError(f"{where}: {exc}") from None


def real_tasks(tasks: list[str], datasets: Mapping[str, Any] | None) -> dict[str, RealTask]:
    """Every task of ``suite.tasks`` defined, and nothing else in ``suite.datasets``."""
    datasets = datasets or {}
    missing = [task for task in tasks if task not in datasets]
    if missing:
        raise MergeflowError(f"suite.datasets: no entry for {missing}; a real suite defines each task of suite.tasks "
                             "(a TALL task name or a dataset reference)")
    extra = [name for name in datasets if name not in tasks]
    if extra:
        raise MergeflowError(f"suite.datasets.{extra[0]}: not a task of suite.tasks ({', '.join(tasks)})")
    return {task: real_task(task, datasets[task]) for task in tasks}
