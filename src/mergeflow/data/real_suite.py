"""A real suite in params.yaml: each task's dataset by reference, checked without torch or ``datasets``.

``suite.source: real`` turns ``suite.tasks`` into names of one's own choosing, each defined in ``suite.datasets``:

- a TALL task name (``eurosat``, ``sun397``, ...: :data:`mergeflow.data.sources.tasks_tall.TALL_TASKS`): its public
  reference, CLIP templates and class names; or a GLUE task name (``cola``, ``sst2``, ... ``rte``:
  :data:`mergeflow.data.sources.tasks_glue.GLUE_REAL_TASKS`): its hub config, text columns and class names;
- a mapping with ``task`` (one of those names) and the keys that say where a local copy is (``kind``, ``path``,
  ``id``, ``config``, ``dataset_class``): the published task read from that copy (same columns, splits and classes);
- or a mapping: the keys of a :class:`~mergeflow.data.sources.reference.DatasetRef` (``kind``, ``path``, ``id``, ...)
  plus optional ``templates`` (zero-shot prompts with one ``{}``; default ``a photo of a {}.``; images only),
  ``class_names`` (only where the dataset carries none) and ``num_classes`` (a check).

A suite's tasks are all images (``image_column``, or a kind that yields images) or all text (``text_columns``: one
sentence or a pair); :func:`real_suite_kind` says which.

``suite.max_examples`` caps each split (the first N rows of the split after the validation carve) for small runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from mergeflow.data.sources.glue import GLUE_REAL_TASKS
from mergeflow.data.sources.real_task import RealTask
from mergeflow.data.sources.reference import DatasetRef
from mergeflow.data.sources.tasks_tall import TALL_TASKS
from mergeflow.errors import MergeflowError

DEFAULT_TEMPLATES = ("a photo of a {}.",)
TASK_KEYS = ("templates", "class_names", "num_classes")  # a mapping's keys that are the task's, not the reference's
LOCATION_KEYS = ("kind", "id", "path", "config", "dataset_class")  # what a local copy of a published task may change
PUBLISHED_TASKS: dict[str, RealTask] = {**TALL_TASKS, **GLUE_REAL_TASKS}  # no name is in both (tested)
MAX_TEXT_COLUMNS = 2  # a sentence or a sentence pair, as the tokenizers encode them


def _published(name: object) -> RealTask:
    if not isinstance(name, str) or name not in PUBLISHED_TASKS:
        raise MergeflowError(f"unknown published task {name!r}; known TALL tasks: {', '.join(TALL_TASKS)}; "
                             f"GLUE tasks: {', '.join(GLUE_REAL_TASKS)} (or give a dataset reference mapping)")
    return PUBLISHED_TASKS[name]


def _local_copy(task: str, entry: Mapping[str, Any]) -> RealTask:
    """``{task: sst2, kind: disk, path: ...}``: the published task with only its location replaced."""
    published = _published(entry["task"])
    other = sorted(set(entry) - {"task", *LOCATION_KEYS})
    if other:
        raise MergeflowError(f"with `task` only the location keys ({', '.join(LOCATION_KEYS)}) may be given, not "
                             f"{', '.join(other)}: the published task fixes its columns, splits and classes")
    location = {key: entry[key] for key in LOCATION_KEYS if key in entry}
    if "kind" not in location:
        raise MergeflowError("a local copy of a published task needs `kind` (and `path` or `id`)")
    reference = {key: value for key, value in published.reference.to_dict().items() if key not in LOCATION_KEYS}
    return dataclasses.replace(published, name=task, reference=DatasetRef.from_dict({**reference, **location}))


def real_task(task: str, entry: str | Mapping[str, Any]) -> RealTask:
    """The task ``task`` of a real suite from its ``suite.datasets`` entry; one MergeflowError naming the key."""
    where = f"suite.datasets.{task}"
    try:
        if isinstance(entry, str):
            return dataclasses.replace(_published(entry), name=task)
        if not isinstance(entry, Mapping):
            raise MergeflowError(f"expected a TALL or GLUE task name or a dataset reference mapping, got {entry!r}")
        if "task" in entry:
            return _local_copy(task, entry)
        reference = {key: value for key, value in entry.items() if key not in TASK_KEYS}
        ref = DatasetRef.from_dict(reference)
        if ref.modality == "text":
            if len(ref.text_columns) > MAX_TEXT_COLUMNS:
                raise MergeflowError(f"`text_columns`: one sentence or a pair, got {len(ref.text_columns)} columns")
            if "templates" in entry:
                raise MergeflowError("`templates` apply to image tasks (zero-shot prompts); a text task's head is made "
                                     "of class prototypes: remove them")
        templates = entry.get("templates", DEFAULT_TEMPLATES if ref.modality == "image" else ())
        names = entry.get("class_names")
        count = entry.get("num_classes")
        if isinstance(templates, str) or not isinstance(templates, (list, tuple)) or not all(isinstance(t, str) for t in templates):
            raise MergeflowError(f"`templates` must be a list of prompts with one '{{}}' each, got {templates!r}")
        if names is not None and (isinstance(names, str) or not isinstance(names, (list, tuple))
                                  or not all(isinstance(n, str) for n in names)):
            raise MergeflowError(f"`class_names` must be a list of names, got {names!r}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise MergeflowError(f"`num_classes` must be a positive integer, got {count!r}")
        origin: Literal["mergeflow", "none"] = "mergeflow" if ref.modality == "image" else "none"
        return RealTask(task, task, ref, tuple(templates), origin, tuple(names) if names else None, count)
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
    defined = {task: real_task(task, datasets[task]) for task in tasks}
    kinds = {task: definition.reference.modality for task, definition in defined.items()}
    if len(set(kinds.values())) > 1:
        text = [task for task, kind in kinds.items() if kind == "text"]
        images = [task for task, kind in kinds.items() if kind == "image"]
        raise MergeflowError(f"suite.datasets: a suite is all images or all text, but {text} are text tasks and {images} "
                             "image tasks; run them as two suites")
    return defined


def real_suite_kind(tasks: Mapping[str, RealTask]) -> Literal["vision", "text"]:
    """``text`` when the suite's tasks are sentences (:func:`real_tasks` checked they are all of one kind)."""
    return "text" if any(task.reference.modality == "text" for task in tasks.values()) else "vision"
