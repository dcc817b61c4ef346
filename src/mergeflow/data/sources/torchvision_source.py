"""Reading a ``torchvision`` reference: an allow-listed dataset class built on its root with ``download=False``.

Nothing is fetched at stage time: a root without the class's files is a user's error with the class's own message.
Class names come from the allow-list where it writes them (MNIST's digits, FER2013's Kaggle order), else from the
instance's ``classes`` where torchvision defines them, else from the task definition.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from mergeflow.data.sources.class_names import resolve_class_names
from mergeflow.data.sources.examples import SourceSplit, as_rgb_image
from mergeflow.data.sources.reference import DatasetRef
from mergeflow.data.sources.torchvision_roots import TORCHVISION_ROOTS
from mergeflow.errors import MergeflowError


def construct_torchvision(ref: DatasetRef, split: str) -> Any:
    """The torchvision dataset object of one split (``Any``: the classes share no typed interface)."""
    import torchvision.datasets  # lazy: slow to import

    assert ref.dataset_class is not None and ref.path is not None
    entry = TORCHVISION_ROOTS[ref.dataset_class]
    root = Path(ref.path).expanduser()
    if not root.is_dir():
        raise MergeflowError(f"{ref.describe()}: `path` {root} is not a folder; it is the torchvision `root` holding the data")
    kwargs: dict[str, Any] = {"train": split == "train"} if entry.split_style == "train_flag" else {"split": split}
    if entry.variant_kwarg:
        kwargs[entry.variant_kwarg] = ref.config
    cls = getattr(torchvision.datasets, ref.dataset_class)
    if "download" in inspect.signature(cls).parameters:  # FER2013 has none: it never downloads
        kwargs["download"] = False
    try:
        return cls(str(root), **kwargs)
    except (RuntimeError, FileNotFoundError, OSError, ValueError) as exc:
        raise MergeflowError(f"{ref.describe()}[{split}]: torchvision found no usable data under {root} (download is off): {exc}") from exc


def open_torchvision_split(ref: DatasetRef, split: str, fallback_names: tuple[str, ...] | None) -> SourceSplit:
    """One split of a torchvision root, rows read through the class's own ``__getitem__``."""
    dataset = construct_torchvision(ref, split)
    name = f"{ref.describe()}[{split}]"
    assert ref.dataset_class is not None  # construct_torchvision checked it
    own_names = TORCHVISION_ROOTS[ref.dataset_class].class_names or getattr(dataset, "classes", None)
    class_names = resolve_class_names(name, own_names, fallback_names)

    def read_row(i: int) -> tuple[Any, object]:
        image, target = dataset[i]
        return as_rgb_image(image, name), target

    return SourceSplit(name, class_names, len(dataset), read_row)
