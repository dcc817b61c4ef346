"""The registry of offline suites: a suite is an ordered set of tasks that experts are trained on and merged over.

Vision suites (images, an open_clip backbone) and text suites (sentences, a Hugging Face encoder) share one name
space, so params.yaml names a suite and the stages ask its kind."""

from __future__ import annotations

from typing import Literal

from mergeflow.data.task_spec import TaskSpec
from mergeflow.data.text_suites import TEXT_SUITES
from mergeflow.data.text_task_spec import TextTaskSpec
from mergeflow.data.vision_tasks.counting import OBJECT_COUNTS
from mergeflow.data.vision_tasks.glyphs import DOCUMENT_LETTERS, HANDWRITTEN_DIGITS, HOUSE_NUMBERS
from mergeflow.data.vision_tasks.land_cover import LAND_COVER_TASK
from mergeflow.data.vision_tasks.photos import PHOTO_PATCHES
from mergeflow.data.vision_tasks.signs import ROAD_SIGNS
from mergeflow.data.vision_tasks.textures import TEXTURES
from mergeflow.errors import MergeflowError

VISION_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        HANDWRITTEN_DIGITS, HOUSE_NUMBERS, ROAD_SIGNS, LAND_COVER_TASK,
        TEXTURES, PHOTO_PATCHES, DOCUMENT_LETTERS, OBJECT_COUNTS,
    )
}

SUITES: dict[str, dict[str, TaskSpec] | dict[str, TextTaskSpec]] = {"vision8": VISION_TASKS, **TEXT_SUITES}


def suite_kind(suite: str) -> Literal["vision", "text"]:
    """Whether a suite's inputs are images or sentences (decides the backbone, the tables and the heads)."""
    suite_tasks(suite)  # an unknown name stops here, listing the known ones
    return "text" if suite in TEXT_SUITES else "vision"


def suite_tasks(suite: str) -> dict[str, TaskSpec] | dict[str, TextTaskSpec]:
    """The tasks a suite offers, by name."""
    if suite not in SUITES:
        raise MergeflowError(f"unknown suite {suite!r}; known suites: {', '.join(SUITES)}")
    return SUITES[suite]


def task_spec(suite: str, task: str) -> TaskSpec | TextTaskSpec:
    """One task of a suite, with an error that lists the valid names."""
    tasks = suite_tasks(suite)
    if task not in tasks:
        raise MergeflowError(f"unknown task {task!r} in suite {suite!r}; known tasks: {', '.join(tasks)}")
    return tasks[task]
