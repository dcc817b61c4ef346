"""What a real classification task is: a dataset reference, prompt templates, and what we know of its classes.

The counterpart of :class:`mergeflow.data.task_spec.TaskSpec` for public datasets: no pixels are generated, so the
task holds where its data live (a :class:`DatasetRef`) instead of a split maker, and its class names are read from
the dataset at load time; ``class_names`` here is only the fallback for datasets whose labels are bare integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mergeflow.data.sources.reference import DatasetRef
from mergeflow.errors import MergeflowError


@dataclass(frozen=True)
class RealTask:
    """One public task.

    ``paper_name``: the name TALL masks / task_vectors use (their checkpoint folders are ``<paper_name>Val``).
    ``templates``: zero-shot prompts, ``str.format`` style with one ``{}``; ``templates_origin`` says whether they are
    the CLIP paper's published list for the dataset or mergeflow's own (datasets CLIP did not evaluate). A text task
    has none (``templates_origin`` ``none``): its frozen head is made of class prototypes, not of prompts.
    ``class_names``: explicit names, in the label order of ``reference``, only where the dataset lacks them (or as a
    check of the count); None means "the dataset's own names".
    ``num_classes``: the published class count, checked against what the dataset reports (None: not pinned).
    """

    name: str
    paper_name: str
    reference: DatasetRef
    templates: tuple[str, ...]
    templates_origin: Literal["clip_paper", "mergeflow", "none"]
    class_names: tuple[str, ...] | None = None
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.reference.modality == "text":
            if self.templates:
                raise MergeflowError(f"task {self.name!r}: a text task takes no `templates` (its head is made of class "
                                     "prototypes of the pretrained encoder); remove them")
        elif not self.templates or any(t.count("{}") != 1 for t in self.templates):
            raise MergeflowError(f"task {self.name!r}: every template needs exactly one '{{}}' for the class name")
        if self.class_names is not None and self.num_classes is not None and len(self.class_names) != self.num_classes:
            raise MergeflowError(f"task {self.name!r}: {len(self.class_names)} class names but num_classes={self.num_classes}")

    def check_class_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The names a split resolved, checked against the published count."""
        if self.num_classes is not None and len(names) != self.num_classes:
            raise MergeflowError(f"task {self.name!r}: {self.reference.describe()} has {len(names)} classes, the task has"
                                 f" {self.num_classes}; the reference points at another dataset (or another config)")
        return names
