"""``--expert NAME=PATH`` arguments, shared by ``mergeflow merge`` and ``mergeflow adapt``."""

from __future__ import annotations

from mergeflow.errors import MergeflowError


def parse_experts(entries: list[str]) -> dict[str, str]:
    """``NAME=PATH`` entries to {name: path}, refusing empty or repeated names."""
    experts: dict[str, str] = {}
    for entry in entries:
        name, separator, path = entry.partition("=")
        name = name.strip()
        if not separator or not name or not path:
            raise MergeflowError(f"--expert expects NAME=PATH, got {entry!r}")
        if name in experts:
            raise MergeflowError(f"--expert {name!r} given twice")
        experts[name] = path
    return experts
