"""Reading an ``image_folder`` reference: one torchvision ``ImageFolder`` per split, ``<path>/<split>/<class>/<image>``.

The layout TALL masks and task_vectors use for SUN397, DTD and EuroSAT. Class names are the folder names, sorted
(torchvision's rule); ``opening`` checks that every split of a reference found the same folders, since a split with
a class missing would renumber the others silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mergeflow.data.sources.class_names import resolve_class_names
from mergeflow.data.sources.examples import SourceSplit, as_rgb_image
from mergeflow.data.sources.reference import DatasetRef
from mergeflow.errors import MergeflowError


def open_folder_split(ref: DatasetRef, split: str, fallback_names: tuple[str, ...] | None) -> SourceSplit:
    """One split of an ImageFolder root; images are opened when their row is read."""
    from torchvision.datasets import ImageFolder  # lazy: torchvision is slow to import

    assert ref.path is not None
    root = Path(ref.path).expanduser()
    name = f"{ref.describe()}[{split}]"
    if not root.is_dir():
        raise MergeflowError(f"{ref.describe()}: `path` {root} is not a folder; it should hold one ImageFolder per split (<path>/<split>/<class>/...)")
    if not (root / split).is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise MergeflowError(f"{name}: no folder {root / split}; folders there: {', '.join(found) or 'none'} (set the reference's split names)")
    try:
        folder = ImageFolder(str(root / split))
    except (FileNotFoundError, OSError) as exc:
        raise MergeflowError(f"{name}: not an ImageFolder ({exc}); expected <split>/<class>/<image files>") from exc
    class_names = resolve_class_names(name, folder.classes, fallback_names)
    samples: list[tuple[str, int]] = folder.samples

    def read_row(i: int) -> tuple[Any, object]:
        path, target = samples[i]
        return as_rgb_image(folder.loader(path), name), target

    return SourceSplit(name, class_names, len(samples), read_row)
