"""The papers' validation split, as a pure function of indices.

TALL masks and task_vectors (``split_train_into_train_val``) carve validation out of train when a dataset has no
validation split of its own: ``val = min(int(n * 0.1), 5000)`` examples, chosen by
``torch.utils.data.random_split(train, [n - val, val], generator=torch.Generator().manual_seed(0))``, the rest stays
train. ``random_split`` draws one ``torch.randperm(n)`` and cuts it in that order, so the first ``n - val`` entries of
the permutation are train and the last ``val`` are validation; reproducing exactly that keeps our splits the papers'
(their MNIST check: the first train index is 36044). A dataset's own validation split, when a reference names one,
is used as it is and train keeps every row.
"""

from __future__ import annotations

from collections.abc import Sequence

from mergeflow.errors import MergeflowError

VALIDATION_FRACTION = 0.1
MAX_VALIDATION = 5000
VALIDATION_SEED = 0


def carve_validation(train_indices: Sequence[int], *, fraction: float = VALIDATION_FRACTION,
                     cap: int = MAX_VALIDATION, seed: int = VALIDATION_SEED) -> tuple[list[int], list[int]]:
    """(train, validation) indices: a seeded random permutation of ``train_indices`` cut as ``random_split`` cuts it."""
    import torch  # lazy: params checks import this module's constants without torch

    n = len(train_indices)
    size = min(int(n * fraction), cap)
    if size <= 0 or size >= n:
        raise MergeflowError(f"a train split of {n} examples is too small to carve a validation split from"
                             f" ({fraction:.0%}, at most {cap}); name the dataset's own `validation_split` in the reference")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return [train_indices[i] for i in order[: n - size]], [train_indices[i] for i in order[n - size :]]


def split_validation(train_indices: Sequence[int], own_validation: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """(train, validation): the dataset's own validation rows when it has them (train untouched), else the carve."""
    if own_validation is not None:
        return list(train_indices), list(own_validation)
    return carve_validation(train_indices)
