"""What to run, asked of DVC itself: the stage graph of `dvc.yaml` and DVC's own change check.

Nothing here knows Prefect, and nothing here decides whether a stage is up to date: DVC does (``Stage.changed``).
This module only turns DVC's answer into an ordered plan, because ``dvc status`` reports first-level invalidation
only (a stage whose upstream is about to rerun still looks clean), so the descendants of every changed stage must be
added by walking the graph.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PlanError(Exception):
    """Bad input for planning (not a DVC repository, unknown target): one readable message, no traceback."""


@dataclass(frozen=True)
class Plan:
    """The stages one run must submit, in dependency order, and why.

    ``order`` is DVC's own reproduction order (post-order of the stage graph, as ``dvc repro`` walks it);
    ``upstream[s]`` lists the stages of ``order`` that ``s`` must wait for.
    """

    root: Path
    order: tuple[str, ...]
    upstream: dict[str, frozenset[str]]
    changed: frozenset[str]
    considered: int

    @property
    def empty(self) -> bool:
        return not self.order


def _quiet_dvc() -> None:
    """DVC logs every changed dependency at WARNING; the plan reports them itself."""
    logging.getLogger("dvc").setLevel(logging.ERROR)


def find_root(path: Path) -> Path:
    """The DVC repository root containing ``path`` (DVC searches upwards, as the dvc CLI does)."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    if not path.is_dir():
        raise PlanError(f"not a directory: {path}")
    try:
        return Path(Repo.find_root(str(path)))
    except NotDvcRepoError:
        raise PlanError(f"not a DVC repository (no .dvc/ in {path} or above it): run `dvc init` first") from None


def plan(root: Path, targets: Sequence[str] = (), *, allow_missing: bool = False, force: bool = False) -> Plan:
    """Ask DVC which stages changed and return them plus their descendants, restricted to what ``targets`` need.

    ``targets`` mean what they mean to ``dvc repro TARGET``: the targets and everything upstream of them (a
    ``foreach`` group name such as ``finetune`` selects every item). ``allow_missing`` treats outputs missing from
    the workspace and cache as up to date, as ``dvc repro --allow-missing`` does (an orchestrator whose clone holds
    no data, with workers that pull from the shared remote). ``force`` plans every stage of the subgraph.
    """
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo, lock_repo

    _quiet_dvc()
    root = find_root(root)
    # Stage names (``finetune@x``, ``sub/dvc.yaml:stage``) are relative to the current directory: plan from the root.
    with contextlib.chdir(root):
        repo = Repo(str(root), _wait_for_lock=True)
        try:
            with lock_repo(repo):
                try:
                    graph = _active_graph(repo.index.graph)
                    selected = _collect(repo, targets) if targets else list(graph.nodes)
                except DvcException as exc:
                    raise PlanError(str(exc)) from None
                # DVC's edges point from a stage to the stages it depends on: upstream = nx.descendants.
                needed: set = set()
                for stage in selected:
                    needed |= {stage} | nx.descendants(graph, stage)
                sub = graph.subgraph(needed)
                order_all = [s for s in nx.dfs_postorder_nodes(sub) if s in needed]
                changed = {
                    s for s in order_all
                    if force or _never_recorded(s)
                    or s.changed(allow_missing=allow_missing, upstream=list(graph.successors(s)))
                }
                rerun: set = set(changed)
                for stage in changed:
                    rerun |= nx.ancestors(sub, stage)  # what reads it, directly or not
                names = {s: s.addressing for s in needed}
                order = tuple(names[s] for s in order_all if s in rerun)
                # Direct dependencies suffice: every reader of a rerun stage is itself rerun.
                upstream = {
                    names[s]: frozenset(names[d] for d in sub.successors(s) if d in rerun)
                    for s in order_all if s in rerun
                }
        finally:
            repo.close()
    return Plan(
        root=root,
        order=order,
        upstream=upstream,
        changed=frozenset(names[s] for s in changed),
        considered=len(order_all),
    )


def _never_recorded(stage: Any) -> bool:
    """No ``dvc.lock`` entry yet. ``changed(allow_missing=True)`` alone would call such a stage up to date."""
    return bool(stage.cmd) and any(not out.hash_info for out in stage.outs)


def _active_graph(graph: Any) -> Any:
    """DVC's own rule: a frozen stage is cut off from its dependencies (``dvc repro`` never looks past it)."""
    active = graph.copy()
    for stage in graph:
        if stage.frozen:
            active.remove_edges_from(list(graph.out_edges(stage)))
    return active


def _collect(repo: Any, targets: Iterable[str]) -> list[Any]:
    stages: list[Any] = []
    for target in targets:
        for stage in repo.stage.collect(target):
            if stage not in stages:
                stages.append(stage)
    return stages
