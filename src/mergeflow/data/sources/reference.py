"""A dataset reference: where a real dataset lives and which of its columns and splits a task uses.

Plain, validated data (strings and tuples of strings) so that it can sit in params.yaml and be compared, hashed and
printed; nothing is opened here (``opening`` does that), and nothing here imports torch or ``datasets``. Every
mistake is one :class:`MergeflowError` that names the key to fix.

Four kinds, one meaning per key:

- ``huggingface``: ``id`` (``owner/name``), optional ``config``; opened with ``datasets.load_dataset(id, config,
  split=...)`` from the local cache (nothing is downloaded at stage time unless the user's own cache lacks it).
- ``disk``: ``path`` to a ``save_to_disk`` folder (a ``DatasetDict``, or one ``Dataset`` folder per split) or to a
  local copy of a hub dataset repository (Parquet files in the hub's layout, ``data/train-00000-of-00001.parquet``,
  optional ``config`` as on the hub).
- ``image_folder``: ``path`` to a root with one torchvision ``ImageFolder`` per split (``<path>/<split>/<class>/*``).
- ``torchvision``: ``dataset_class`` from :data:`~mergeflow.data.sources.torchvision_roots.TORCHVISION_ROOTS` and its
  ``path`` (the ``root`` argument), constructed with ``download=False``; ``config`` is the class's variant (EMNIST).

Columns (``image_column`` or ``text_columns``, and ``label_column``) apply to the two ``datasets`` kinds only; an
ImageFolder or a torchvision class yields (image, label) pairs itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from mergeflow.data.sources.torchvision_roots import TORCHVISION_ROOTS
from mergeflow.errors import MergeflowError

SourceKind = Literal["huggingface", "disk", "image_folder", "torchvision"]
KINDS: tuple[SourceKind, ...] = ("huggingface", "disk", "image_folder", "torchvision")
COLUMN_KINDS = ("huggingface", "disk")  # the kinds whose rows have named columns
SplitRole = Literal["train", "validation", "test"]


@dataclass(frozen=True)
class DatasetRef:
    """One dataset by reference; see the module docstring for what each key means for each kind.

    ``validation_split`` names the dataset's own validation split; left unset (the papers' convention), validation
    is carved from ``train_split`` by :func:`mergeflow.data.sources.validation.split_validation`.
    """

    kind: SourceKind
    id: str | None = None
    path: str | None = None
    config: str | None = None
    dataset_class: str | None = None
    train_split: str = "train"
    validation_split: str | None = None
    test_split: str = "test"
    image_column: str | None = None
    text_columns: tuple[str, ...] = ()
    label_column: str = "label"

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def modality(self) -> Literal["image", "text"]:
        """Whether the examples' inputs are images or sentences."""
        return "text" if self.text_columns else "image"

    def split_name(self, role: SplitRole) -> str | None:
        """The dataset's own name for a role (``validation`` is None when it is carved from train)."""
        return {"train": self.train_split, "validation": self.validation_split, "test": self.test_split}[role]

    def describe(self) -> str:
        """A short name for messages: ``huggingface:tanganke/eurosat``, ``torchvision:MNIST@/data``."""
        if self.kind == "huggingface":
            return f"huggingface:{self.id}" + (f"/{self.config}" if self.config else "")
        if self.kind == "torchvision":
            return f"torchvision:{self.dataset_class}" + (f"({self.config})" if self.config else "") + f"@{self.path}"
        return f"{self.kind}:{self.path}" + (f"/{self.config}" if self.config else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able keys (defaults left out, so params.yaml shows only what a reference sets)."""
        out: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "kind" or value != field.default:
                out[field.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetRef:
        """A reference from params.yaml / JSON, with one readable error for an unknown key or a wrong type."""
        if not isinstance(data, Mapping):
            raise MergeflowError(f"a dataset reference must be a mapping of keys, got {type(data).__name__}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MergeflowError(f"dataset reference: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(sorted(known))}")
        if "kind" not in data:
            raise MergeflowError(f"dataset reference: `kind` is missing; one of {', '.join(KINDS)}")
        values = dict(data)
        for key, value in values.items():
            if key == "text_columns":
                if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                    raise MergeflowError(f"dataset reference: `text_columns` must be a list of column names, got {value!r}")
                values[key] = tuple(value)
            elif value is not None and not isinstance(value, str):
                raise MergeflowError(f"dataset reference: `{key}` must be a string, got {value!r}")
        return cls(**values)


def _validate(ref: DatasetRef) -> None:
    """Each kind's required keys present, the others absent, and names that cannot mean anything rejected."""
    where = f"dataset reference ({ref.kind})"
    if ref.kind not in KINDS:
        raise MergeflowError(f"dataset reference: unknown kind {ref.kind!r}; one of {', '.join(KINDS)}")
    for key in ("id", "path", "config", "dataset_class", "image_column", "validation_split"):
        value = getattr(ref, key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise MergeflowError(f"{where}: `{key}` must be a non-empty string or left out, got {value!r}")
    for key in ("train_split", "test_split", "label_column"):
        if not isinstance(getattr(ref, key), str) or not getattr(ref, key).strip():
            raise MergeflowError(f"{where}: `{key}` must be a non-empty string, got {getattr(ref, key)!r}")
    splits = [s for s in (ref.train_split, ref.validation_split, ref.test_split) if s is not None]
    if len(set(splits)) != len(splits):
        raise MergeflowError(f"{where}: train_split, validation_split and test_split must differ, got {splits}")

    required = {"huggingface": "id", "disk": "path", "image_folder": "path", "torchvision": "path"}[ref.kind]
    if getattr(ref, required) is None:
        raise MergeflowError(f"{where}: `{required}` is missing")
    if ref.kind == "huggingface":
        _forbid(ref, where, "path", "dataset_class")
        assert ref.id is not None
        if ref.id.startswith(("/", ".", "~")) or any(c.isspace() for c in ref.id):
            raise MergeflowError(f"{where}: `id` {ref.id!r} is not a hub id (owner/name); for a local folder use kind `disk` with `path`")
    else:
        _forbid(ref, where, "id")
    if ref.kind != "torchvision":
        _forbid(ref, where, "dataset_class")
    if ref.kind == "image_folder":
        _forbid(ref, where, "config")

    if ref.kind in COLUMN_KINDS:
        if (ref.image_column is None) == (not ref.text_columns):
            raise MergeflowError(f"{where}: name exactly one input: `image_column` (images) or `text_columns` (sentences)")
        if len(set(ref.text_columns)) != len(ref.text_columns) or not all(isinstance(c, str) and c for c in ref.text_columns):
            raise MergeflowError(f"{where}: `text_columns` must be distinct non-empty column names, got {list(ref.text_columns)}")
        if ref.label_column in (ref.image_column, *ref.text_columns):
            raise MergeflowError(f"{where}: `label_column` {ref.label_column!r} is also an input column")
    else:
        _forbid(ref, where, "image_column", "text_columns")
        if ref.label_column != "label":
            raise MergeflowError(f"{where}: `label_column` applies to huggingface/disk references only; an {ref.kind} yields its labels itself")

    if ref.kind == "torchvision":
        _validate_torchvision(ref, where)


def _validate_torchvision(ref: DatasetRef, where: str) -> None:
    if ref.dataset_class is None:
        raise MergeflowError(f"{where}: `dataset_class` is missing; one of {', '.join(TORCHVISION_ROOTS)}")
    entry = TORCHVISION_ROOTS.get(ref.dataset_class)
    if entry is None:
        raise MergeflowError(f"{where}: `dataset_class` {ref.dataset_class!r} is not allowed; one of {', '.join(TORCHVISION_ROOTS)}"
                             " (CIFAR10/100 are left out: torchvision unpickles them; use their Hugging Face ids)")
    for split in (ref.train_split, ref.validation_split, ref.test_split):
        if split is not None and split not in entry.splits:
            raise MergeflowError(f"{where}: {ref.dataset_class} has no split {split!r}; its splits: {', '.join(entry.splits)}")
    if entry.variant_kwarg is None:
        _forbid(ref, where, "config")
    elif ref.config not in entry.variants:
        raise MergeflowError(f"{where}: {ref.dataset_class} needs `config` (its {entry.variant_kwarg!r} argument), one of {', '.join(entry.variants)}; got {ref.config!r}")


def _forbid(ref: DatasetRef, where: str, *keys: str) -> None:
    for key in keys:
        if getattr(ref, key):
            raise MergeflowError(f"{where}: `{key}` does not apply to this kind; remove it")


def parse_reference(data: Mapping[str, Any] | DatasetRef) -> DatasetRef:
    """A reference from either form (params code passes mappings, tests and task tables pass references)."""
    return data if isinstance(data, DatasetRef) else DatasetRef.from_dict(data)
