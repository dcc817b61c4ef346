"""Which class names a split gets: the dataset's own where it has them, else the task definition's.

The dataset's names win because its label integers are defined by them: a list written elsewhere can be in another
order (FER2013's Kaggle CSV and clip_benchmark's webdataset number the same seven emotions differently). A task
definition's list is a fallback for datasets whose label column is a bare integer or boolean, and a check: when both
exist they must have as many names.
"""

from __future__ import annotations

from collections.abc import Sequence

from mergeflow.errors import MergeflowError


def resolve_class_names(where: str, dataset_names: Sequence[str] | None, fallback: Sequence[str] | None) -> tuple[str, ...]:
    """The names for ``where`` (a split's display name); one error when neither source has them or they disagree."""
    if dataset_names:
        if fallback and len(fallback) != len(dataset_names):
            raise MergeflowError(f"{where}: the dataset has {len(dataset_names)} classes but the task definition lists {len(fallback)};"
                                 " the reference points at another dataset than the task expects")
        return tuple(str(name) for name in dataset_names)
    if fallback:
        return tuple(fallback)
    raise MergeflowError(f"{where}: the dataset carries no class names (its label column is not a ClassLabel and the class has no"
                         " `classes`); list them in the task definition's `class_names`")
