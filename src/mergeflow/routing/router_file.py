"""A fitted router on disk: its tensors in safetensors, its name, tasks and provenance in the metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from mergeflow.errors import MergeflowError
from mergeflow.routing.routers import Router
from mergeflow.statedict.io import read_safetensors, save_tensors

ROUTER_FORMAT = "mergeflow-router/1"


def save_router(path: str | os.PathLike[str], router: Router, info: Mapping[str, Any]) -> None:
    """Write atomically; ``info`` (JSON) records how it was calibrated (feature model, N, eps, seed, threshold)."""
    metadata = {
        "format": ROUTER_FORMAT,
        "router": router.name,
        "tasks": json.dumps(list(router.tasks)),
        "info": json.dumps(dict(info), sort_keys=True),
    }
    save_tensors(path, {key: value.contiguous() for key, value in router.state().items()}, metadata=metadata)


def load_router(path: str | os.PathLike[str]) -> tuple[Router, dict[str, Any]]:
    """The router and its ``info``; a file of another kind gives a clear error."""
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != ROUTER_FORMAT:
        raise MergeflowError(f"{path}: not a mergeflow router file (format {metadata.get('format')!r}); rerun calibrate")
    try:
        tasks = json.loads(metadata["tasks"])
        info = json.loads(metadata.get("info", "{}"))
    except (KeyError, ValueError) as exc:
        raise MergeflowError(f"{path}: corrupt router metadata ({exc}); rerun calibrate") from exc
    return Router.from_state(metadata["router"], tasks, tensors), info
