"""Which ready stage to start first: the one with the longest chain of work still behind it, timed by the last run.

Why: with a concurrency limit, starting ready stages in DVC's order can leave a long stage waiting behind short ones
and then running alone at the end (the default pipeline's ``analyze_adaptation`` became ready, waited 5 minutes behind
LoRA stages, then ran 10 minutes alone). Longest-path-first (the classic list-scheduling rule) starts it early.
Durations come from the flow's previous runs in this clone; a stage never timed counts as 0 s, so a first run keeps
DVC's order. Ordering only: which stages run, and with what, is still DVC's decision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from mergeflow.atomic import write_text_atomic

DURATIONS_FILE = "stage_seconds.json"  # in the flow's log folder: {stage: seconds of its last run}


def load_durations(path: Path) -> tuple[dict[str, float], str]:
    """The recorded durations, and a warning when the file exists but cannot be used (then no durations)."""
    if not path.exists():
        return {}, ""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return {str(stage): float(seconds) for stage, seconds in data.items()}, ""
    except (OSError, ValueError, TypeError) as exc:
        return {}, f"ignoring {path} ({exc}); stages start in DVC's order"


def save_durations(path: Path, recorded: Mapping[str, float], measured: Mapping[str, float]) -> None:
    """Add this run's measured durations to the record, written atomically (a killed flow never leaves half a file)."""
    merged = {**recorded, **measured}
    write_text_atomic(path, json.dumps(dict(sorted(merged.items())), indent=1))


def path_lengths(order: Iterable[str], upstream: Mapping[str, Iterable[str]],
                 durations: Mapping[str, float]) -> dict[str, float]:
    """For each stage: its duration plus the longest chain of durations among the stages that wait for it.

    ``order`` must list every stage after the stages it waits for (a plan's order does).
    """
    stages = list(order)
    downstream: dict[str, list[str]] = {stage: [] for stage in stages}
    for stage in stages:
        for up in upstream[stage]:
            if up in downstream:
                downstream[up].append(stage)
    length: dict[str, float] = {}
    for stage in reversed(stages):
        length[stage] = durations.get(stage, 0.0) + max((length[d] for d in downstream[stage]), default=0.0)
    return length
