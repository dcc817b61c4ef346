"""Profiles: a whole params file (smoke, text6: copied as they are), or an overlay that names its base with
``extends:`` and lists only the keys it changes (full-analysis), so it cannot go stale when the base's other keys do.

``python -m mergeflow.profiles PROFILE OUT`` writes the params file a workspace runs with (scripts/run_suite.sh).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from mergeflow.errors import MergeflowError

EXTENDS = "extends"


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MergeflowError(f"{path}: cannot read the profile ({exc})") from exc
    if not isinstance(raw, dict):
        raise MergeflowError(f"{path}: expected a mapping of sections at the top level")
    return raw


def overlay(base: dict[str, Any], changes: dict[str, Any], where: str = "") -> dict[str, Any]:
    """``base`` with ``changes`` applied: mappings merge key by key, anything else (lists included) is replaced.

    A key the base lacks is an error, so a misspelt or renamed key fails here instead of being silently added."""
    merged = dict(base)
    for key, value in changes.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in base:
            raise MergeflowError(f"profile key {name}: not in the base params (check the spelling against params.yaml)")
        if isinstance(value, dict) and isinstance(base[key], dict):
            merged[key] = overlay(base[key], value, name)
        else:
            merged[key] = value
    return merged


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
