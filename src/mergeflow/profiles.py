"""Profiles: an overlay that names its base with ``extends:`` (params.yaml or another profile) and lists only the keys
it changes, so it cannot go stale when the base's other keys do; or a whole params file (copied as it is).

Mappings merge key by key and anything else (lists included) is replaced; a key the base lacks is an error. A mapping
whose keys differ from the base's (a text suite's ``finetune:`` blocks are named by its own tasks; a fixed ``scale:``
instead of a ``scale_grid:``) says ``__replace__: true`` and then replaces the base's mapping whole:

    finetune:
      __replace__: true    # the base's vision blocks are dropped; these are the only ones
      product_reviews: {lr: 5.0e-5, steps: 60, batch_size: 16, weight_decay: 0.1, warmup_steps: 6, seed: 0}

``python -m mergeflow.profiles PROFILE OUT`` writes the params file a workspace runs with (scripts/run_suite.sh).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node

from mergeflow.errors import MergeflowError

EXTENDS = "extends"
REPLACE = "__replace__"  # in an overlay's mapping: replace the base's mapping whole instead of merging into it
# Sections whose per-method blocks list only what differs from the methods' declarations: inside such a block, a key
# the base leaves out is a hyperparameter at its declared default, so an overlay may set it (params validation checks
# it against the declaration, with the same message as in params.yaml). The sections' other mappings (adapt.analysis,
# lora.adapter, lora.train) get the same leeway here; params validation refuses an unknown key in them by name.
DECLARED_BLOCKS = ("merge", "adapt", "dynamic", "lora")


# Params and profile files are read by read_yaml: UTF-8 text parsed safely, a key given twice refused with both lines
# (PyYAML's safe_load keeps the last of two equal keys without a word, and `dvc params diff` then calls the file
# corrupted), every failure to read or parse one MergeflowError line naming the file.


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping key given twice (merge keys ``<<`` keep YAML's meaning: explicit keys
    override merged ones)."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[object, object]:
        if isinstance(node, MappingNode):
            seen: dict[object, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader's own construct_mapping says so
                    continue
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise MergeflowError(f"key {key!r} given twice (lines {first} and {line}); keep one")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


def parse_yaml(text: str, source: str) -> object:
    """``text`` parsed (safe, duplicate keys refused); errors name ``source``."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - UniqueKeyLoader is a SafeLoader
    except MergeflowError as exc:
        raise MergeflowError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise MergeflowError(f"{source}: not valid YAML ({' '.join(str(exc).split())})") from None


def read_yaml(path: str | os.PathLike[str], what: str = "YAML file") -> object:
    """The parsed content of file ``path``, or one line saying why it cannot be read."""
    if not os.path.exists(path):
        raise MergeflowError(f"{path}: not found")
    if os.path.isdir(path):
        raise MergeflowError(f"{path}: is a directory, not a {what}")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise MergeflowError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MergeflowError(f"{path}: not UTF-8 text (byte {exc.start}); save the {what} as UTF-8") from None
    return parse_yaml(text, str(path))


def _read(path: Path) -> dict[str, Any]:
    raw = read_yaml(path, "profile")  # one line for a missing, unreadable, non-UTF-8 or invalid file or a key twice
    if not isinstance(raw, dict):
        raise MergeflowError(f"{path}: expected a mapping of sections at the top level")
    return raw


def overlay(base: dict[str, Any], changes: dict[str, Any], where: str = "") -> dict[str, Any]:
    """``base`` with ``changes`` applied: mappings merge key by key, anything else (lists included) is replaced, and a
    mapping marked ``__replace__: true`` replaces the base's mapping whole (the marker dropped).

    A key the base lacks is an error, so a misspelt or renamed key fails here instead of being silently added. The keys
    of a replacing mapping are not checked here (they differ from the base's by design): params validation does that."""
    merged = dict(base)
    for key, value in changes.items():
        name = f"{where}.{key}" if where else str(key)
        in_declared_block = where.count(".") == 1 and where.split(".")[0] in DECLARED_BLOCKS
        if key not in base and not in_declared_block:
            raise MergeflowError(f"profile key {name}: not in the base params (check the spelling against params.yaml)")
        if key not in base:
            merged[key] = value
            continue
        if isinstance(value, dict) and REPLACE in value:
            merged[key] = _replacement(value, base[key], name)
        elif isinstance(value, dict) and isinstance(base[key], dict):
            merged[key] = overlay(base[key], value, name)
        else:
            merged[key] = value
    return merged


def _replacement(value: dict[str, Any], base: object, name: str) -> dict[str, Any]:
    """The mapping a ``__replace__: true`` block stands for, checked: the marker is true, the base's value is a mapping,
    and no marker is nested inside (there is no base to merge into there)."""
    if value[REPLACE] is not True:
        raise MergeflowError(f"profile key {name}.{REPLACE}: must be true (or leave it out to merge), got {value[REPLACE]!r}")
    if not isinstance(base, dict):
        raise MergeflowError(f"profile key {name}: {REPLACE} replaces a mapping, but the base's value is {base!r}")
    body = {key: item for key, item in value.items() if key != REPLACE}
    pending = [(name, body)]
    while pending:
        where, mapping = pending.pop()
        for key, item in mapping.items():
            if key == REPLACE:
                raise MergeflowError(f"profile key {where}.{REPLACE}: only directly under a key of the base (inside "
                                     f"{name}'s replacement there is nothing to merge into)")
            if isinstance(item, dict):
                pending.append((f"{where}.{key}", item))
    return body


def resolve_profile(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The full params mapping a profile stands for (``extends`` is relative to the profile's folder)."""
    profile = Path(path)
    raw = _read(profile)
    if EXTENDS not in raw:
        return raw
    changes = {key: value for key, value in raw.items() if key != EXTENDS}
    return overlay(resolve_profile(profile.parent / str(raw[EXTENDS])), changes)


def write_profile(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Write the params file for ``path``: a whole profile byte for byte (comments kept), an overlay resolved."""
    if EXTENDS not in _read(Path(path)):
        shutil.copyfile(path, out)
        return
    text = yaml.safe_dump(resolve_profile(path), sort_keys=False, default_flow_style=None, width=120)
    Path(out).write_text(f"# generated from {path} by mergeflow.profiles; edit the profile, not this file\n{text}", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m mergeflow.profiles PROFILE.yaml OUT.yaml")
    try:
        write_profile(sys.argv[1], sys.argv[2])
    except MergeflowError as exc:
        sys.exit(f"mergeflow: {exc}")
