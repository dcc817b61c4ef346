"""Params and profile files as YAML: read as UTF-8 text, parsed safely, a key given twice refused with both lines.

PyYAML's ``safe_load`` keeps the last of two equal keys without a word (and ``dvc params diff`` then calls the file
corrupted); here that is an error naming the key and both lines. Every failure to read or parse is one
:class:`MergeflowError` line naming the file: missing, a directory, unreadable, not UTF-8, not YAML.
"""

from __future__ import annotations

import os

import yaml
from yaml.nodes import MappingNode, Node

from mergeflow.errors import MergeflowError


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
