"""The one thing every source returns: a lazy split of (input, label) examples with its class names.

Lazy because the papers' datasets are large (SUN397, Food101: tens of GB of JPEGs); a split knows its length and
reads row ``i`` only when asked, so a validation carve or a small profile touches only the rows it uses. Images stay
PIL: the backbone's own preprocessing resizes and normalises them at stage time, so nothing here fixes a size.
They are converted to RGB, as open_clip's and CLIP's preprocessing do first anyway, so that grey (MNIST), palette
and RGBA images reach a stage in one mode.
"""

from __future__ import annotations

import io
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

from mergeflow.errors import MergeflowError

if TYPE_CHECKING:
    from PIL import Image

@dataclass(frozen=True)
class Example:
    """One row: ``input`` is a PIL RGB image or a tuple of sentences; ``index`` is its row in the source split."""

    input: Image.Image | tuple[str, ...]
    label: int
    index: int


RowReader = Callable[[int], tuple["Image.Image | tuple[str, ...]", object]]


class SourceSplit(Sequence[Example]):
    """One split of one source, read lazily; ``select`` gives a view on some of its rows (the validation carve)."""

    def __init__(self, name: str, class_names: tuple[str, ...], length: int, read_row: RowReader,
                 rows: Sequence[int] | None = None) -> None:
        self.name = name  # e.g. "huggingface:tanganke/eurosat[train]", used in messages and provenance
        self.class_names = class_names
        self._length = length
        self._read_row = read_row
        self._rows = rows

    def __len__(self) -> int:
        return self._length if self._rows is None else len(self._rows)

    @overload
    def __getitem__(self, i: int) -> Example: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Example]: ...

    def __getitem__(self, i: int | slice) -> Example | Sequence[Example]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name}: row {i} out of range ({len(self)} rows)")
        i = i % len(self)
        row = i if self._rows is None else self._rows[i]
        value, label = self._read_row(row)
        return Example(input=value, label=self._checked_label(label, row), index=row)

    def __iter__(self) -> Iterator[Example]:
        return (self[i] for i in range(len(self)))

    @property
    def rows(self) -> list[int]:
        """The rows of the source split this view reads, in order (what a prepared manifest records)."""
        return list(range(self._length)) if self._rows is None else list(self._rows)

    def select(self, rows: Sequence[int]) -> SourceSplit:
        """The rows ``rows`` of this split (indices into this split), in that order, still lazy."""
        base = list(range(self._length)) if self._rows is None else self._rows
        try:
            picked = [base[r] for r in rows]
        except IndexError:
            raise MergeflowError(f"{self.name}: a selected row is outside 0..{len(self) - 1}") from None
        return SourceSplit(self.name, self.class_names, self._length, self._read_row, picked)

    def _checked_label(self, label: object, row: int) -> int:
        """Labels as plain ints in 0..C-1 (PCAM's labels are booleans; a missing label is -1 or None)."""
        if isinstance(label, (bool, numbers.Integral)):  # numpy integers are Integral
            label = int(label)
        if not isinstance(label, int) or not 0 <= label < len(self.class_names):
            raise MergeflowError(f"{self.name}: row {row} has label {label!r}, not one of 0..{len(self.class_names) - 1}"
                                 " (an unlabelled split, or class names that do not fit this dataset)")
        return label


def as_rgb_image(value: object, where: str) -> Image.Image:
    """A PIL RGB image from what a source stores: a PIL image, encoded bytes, or the ``{"bytes", "path"}`` struct that
    Hugging Face Parquet files hold when their schema lacks the ``Image`` feature."""
    from PIL import Image as PILImage

    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        value = PILImage.open(io.BytesIO(value))
    elif isinstance(value, str):
        value = PILImage.open(value)
    if not isinstance(value, PILImage.Image):
        raise MergeflowError(f"{where}: expected an image, got {type(value).__name__}; check the reference's `image_column`")
    return value if value.mode == "RGB" else value.convert("RGB")
