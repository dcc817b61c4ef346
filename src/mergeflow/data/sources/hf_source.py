"""Reading ``huggingface`` and ``disk`` references through the ``datasets`` library, lazily.

Both kinds end as one memory-mapped ``datasets.Dataset`` per split, so a row is decoded only when a stage reads it and
class names come from the label column's ``ClassLabel`` feature when the dataset has one. The library's own loaders
are used for every public format (hub ids, ``save_to_disk`` folders, Parquet files in the hub's layout) rather than a
reader of ours: they know the formats' corner cases (feature metadata in the Parquet schema, sharded files, hub
``configs``). ``datasets`` is imported on first use only: it is slow to import and params checks need none of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mergeflow.data.sources.class_names import resolve_class_names
from mergeflow.data.sources.examples import SourceSplit, as_rgb_image
from mergeflow.data.sources.reference import DatasetRef
from mergeflow.errors import MergeflowError


def open_datasets_split(ref: DatasetRef, split: str, fallback_names: tuple[str, ...] | None,
                        cache_dir: str | None = None) -> SourceSplit:
    """One split of a ``huggingface`` or ``disk`` reference, with its columns checked and its class names resolved."""
    name = f"{ref.describe()}[{split}]"
    dataset = load_hf_split(ref, split, cache_dir)
    inputs = [ref.image_column] if ref.image_column else list(ref.text_columns)
    missing = [c for c in (*inputs, ref.label_column) if c not in dataset.column_names]
    if missing:
        keys = {c: "label_column" if c == ref.label_column else ("image_column" if c == ref.image_column else "text_columns") for c in missing}
        raise MergeflowError(f"{name}: no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(dataset.column_names)});"
                             f" set {', '.join(sorted(set(keys.values())))} in the reference")
    dataset = dataset.select_columns([*inputs, ref.label_column])
    class_names = resolve_class_names(name, _feature_names(dataset.features[ref.label_column]), fallback_names)

    def read_row(i: int) -> tuple[Any, object]:
        row = dataset[i]
        if ref.image_column:
            return as_rgb_image(row[ref.image_column], name), row[ref.label_column]
        texts = tuple(row[c] for c in ref.text_columns)
        if not all(isinstance(t, str) for t in texts):
            raise MergeflowError(f"{name}: row {i}: text columns {list(ref.text_columns)} must hold strings")
        return texts, row[ref.label_column]

    return SourceSplit(name, class_names, len(dataset), read_row)


def load_hf_split(ref: DatasetRef, split: str, cache_dir: str | None = None) -> Any:
    """The ``datasets.Dataset`` of one split (``Any``: the library ships no type stubs mypy can rely on)."""
    import datasets

    if ref.kind == "huggingface":
        return _wrapped(ref, split, lambda: datasets.load_dataset(ref.id, ref.config, split=split, cache_dir=cache_dir))
    assert ref.kind == "disk" and ref.path is not None
    root = Path(ref.path).expanduser()
    where = f"{ref.describe()}"
    if not root.exists():
        raise MergeflowError(f"{where}: `path` {root} does not exist; point it at a save_to_disk folder or a local copy of a hub dataset")
    if (root / split / "state.json").is_file():  # DatasetDict.save_to_disk, or one Dataset.save_to_disk per split
        if ref.config:
            raise MergeflowError(f"{where}: `config` applies to hub-layout folders, not to save_to_disk folders; remove it")
        return _wrapped(ref, split, lambda: datasets.load_from_disk(str(root / split)))
    if (root / "dataset_dict.json").is_file():
        found = sorted(p.name for p in root.iterdir() if (p / "state.json").is_file())
        raise MergeflowError(f"{where}: the saved DatasetDict has no split {split!r}; its splits: {', '.join(found)}")
    if (root / "state.json").is_file():
        raise MergeflowError(f"{where}: {root} is one saved Dataset without splits; save a DatasetDict (or one folder per split: <path>/<split>/)")
    if not root.is_dir():
        if root.suffix != ".parquet":
            raise MergeflowError(f"{where}: `path` must be a folder or a .parquet file, got {root}")
        files: dict[str, Any] = {split: str(root)}
        return _wrapped(ref, split, lambda: datasets.load_dataset("parquet", data_files=files, split=split, cache_dir=cache_dir))
    if ref.config and not (root / "README.md").is_file() and (root / ref.config).is_dir():
        # hub files copied without the README that declares the configs: the config is its folder
        return _wrapped(ref, split, lambda: datasets.load_dataset(str(root), data_dir=ref.config, split=split, cache_dir=cache_dir))
    return _wrapped(ref, split, lambda: datasets.load_dataset(str(root), ref.config, split=split, cache_dir=cache_dir))


def _wrapped(ref: DatasetRef, split: str, load: Any) -> Any:
    """Run a ``datasets`` loader; its many exception types (missing split, bad config, not cached offline) become one."""
    try:
        dataset = load()
    except MergeflowError:
        raise
    except Exception as exc:
        raise MergeflowError(f"{ref.describe()}: cannot open split {split!r}: {type(exc).__name__}: {exc}") from exc
    if not hasattr(dataset, "column_names") or isinstance(getattr(dataset, "column_names", None), dict):
        raise MergeflowError(f"{ref.describe()}: split {split!r} did not load as one Dataset (got {type(dataset).__name__})")
    return dataset


def _feature_names(feature: Any) -> tuple[str, ...] | None:
    """A ``ClassLabel``'s names, or None for a plain integer / boolean label column."""
    import datasets

    return tuple(feature.names) if isinstance(feature, datasets.ClassLabel) else None
