"""The static merging methods as users see them (torch-free): results-table name, what it returns (``delta``: one
merged task vector; ``bank``: a mask bank), a summary and its hyperparameters with the authors' validation grids.
``merging/registry.py`` binds each name to its function and plan."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

from mergeflow.declarations.common import (
    Declaration,
    HyperParameter,
    Rule,
    Value,
    check_choice,
    check_fraction,
    check_non_negative,
    check_non_negative_int,
    check_number,
    lookup,
)

AGGREGATES = ("mean", "sum")  # TIES' disjoint merge
SVD_CHOICES = ("exact", "lowrank")  # how the low-rank SVD methods decompose (merging.top_svd)


@dataclass(frozen=True)
class MergeDeclaration(Declaration):
    returns: Literal["delta", "bank"] = "delta"


def _in_choices(choices: Sequence[str]) -> Callable[[str, object], object]:
    return partial(check_choice, choices=choices)


_TA_SCALE_GRID = tuple(round(0.1 * step, 1) for step in range(1, 11))
_SVD_SCALE_GRID = tuple(round(0.1 * step, 1) for step in range(1, 31))


def _scale(default: float, help_text: str, grid: tuple[Value, ...]) -> HyperParameter:
    return HyperParameter("scale", float, default, help_text, check_number, grid=grid)


def _keep_fraction(default: float) -> HyperParameter:
    return HyperParameter("k", float, default, "TIES keep fraction per task, in (0, 1]; 1 = no trim",
                          partial(check_fraction, allow_zero=False))


def _aggregate(default: str) -> HyperParameter:
    return HyperParameter("aggregate", str, default, "TIES disjoint merge: mean (dis-mean) or sum (dis-sum)", _in_choices(AGGREGATES))


def _svd(help_text: str) -> HyperParameter:
    """The decomposition of the methods that keep only each matrix's top components (TSV-M, CART)."""
    return HyperParameter("svd", str, "exact", f"{help_text}: exact (thin SVD) or lowrank (randomized, torch.svd_lowrank)",
                          _in_choices(SVD_CHOICES))


def _scale_not_zero(settings: Mapping[str, object], tasks: int) -> str | None:
    """Every ``scale * X`` method gives theta_0 itself at scale 0."""
    if settings.get("scale") == 0:
        return "scale 0 leaves theta_0 unchanged (the merge would be the pretrained model); give a nonzero scale"
    return None


def _agreement_reachable(settings: Mapping[str, object], tasks: int) -> str | None:
    """No entry is kept by more task masks than there are tasks: the consensus would be empty."""
    needed = settings.get("min_agreement")
    if isinstance(needed, int) and needed > tasks:
        return (f"min_agreement {needed} exceeds the {tasks} experts: no entry can be kept by {needed} task masks, so the "
                f"merge would be theta_0 unchanged; use min_agreement <= {tasks}")
    return None


def _tsv_rank_fits(settings: Mapping[str, object], tasks: int) -> str | None:
    """T blocks of int(rank * r) components must fit in r: rank <= 1/T (a matrix-rank-dependent rounding to zero
    is refused at merge time, where the checkpoints' shapes are known: merging.tsv)."""
    rank = settings.get("rank")
    if isinstance(rank, float) and rank * tasks > 1 + 1e-9:
        return f"rank {rank} keeps more than 1/T of every matrix's rank per task for {tasks} experts; use rank <= {1 / tasks:.4g}"
    return None


def _lowrank_decomposes_something(settings: Mapping[str, object], tasks: int) -> str | None:
    """CART at rank 0 keeps no component, so it decomposes nothing and ``svd`` would have no effect."""
    if settings.get("svd") == "lowrank" and settings.get("rank") == 0:
        return "rank 0 keeps no component, so svd lowrank decomposes nothing (the merge is the average); use rank > 0"
    return None


_SCALED: tuple[Rule, ...] = (_scale_not_zero,)

_LAM = HyperParameter("lam", float, 0.4, "TALL lambda in m_t = |tau_t| > lam * |tau_MTL - tau_t| (>= 0)", check_non_negative,
                      grid=(0.2, 0.3, 0.4, 0.5, 0.6))

MERGE_DECLARATIONS: dict[str, MergeDeclaration] = {
    method.name: method
    for method in (
        MergeDeclaration("weight_averaging", "mean of the experts' weights"),
        MergeDeclaration("task_arithmetic", "theta_0 + scale * sum of task vectors",
                         (_scale(0.3, "coefficient of the task-vector sum", _TA_SCALE_GRID),), meaningful_when=_SCALED),
        MergeDeclaration("ties", "TIES: trim, elect sign, disjoint merge",
                         (_keep_fraction(0.2), _aggregate("mean"), _scale(1.0, "coefficient of the TIES vector", _TA_SCALE_GRID)),
                         meaningful_when=_SCALED),
        MergeDeclaration("tall_ta", "TALL masks over the task-arithmetic sum", (_LAM,), returns="bank"),
        MergeDeclaration("tall_ties", "TALL masks over the TIES dis-sum vector", (_LAM, _keep_fraction(0.2), _aggregate("sum")),
                         returns="bank"),
        MergeDeclaration("consensus_ta", "TA sum restricted to entries >= min_agreement TALL masks share",
                         (_LAM, HyperParameter("min_agreement", int, 2, "tasks whose TALL mask must keep an entry (>= 0)",
                                               check_non_negative_int),
                          _scale(0.3, "coefficient of the consensus vector", _TA_SCALE_GRID)),
                         min_tasks=2, min_tasks_reason="a consensus of one task's mask keeps all of it (that is task_arithmetic)",
                         meaningful_when=(*_SCALED, _agreement_reachable)),
        MergeDeclaration("emr", "EMR: unified vector, per-task masks and rescalers (no hyperparameters)", returns="bank"),
        MergeDeclaration("tsv_m", "Task Singular Vectors merge",
                         (_scale(1.0, "coefficient of the TSV-M delta", _SVD_SCALE_GRID),
                          HyperParameter("rank", float, None, "per-task rank fraction of r; none = int(r/T), the authors' rule",
                                         partial(check_fraction, allow_zero=False), optional=True),
                          _svd("each task's top-k decomposition")),
                         meaningful_when=(*_SCALED, _tsv_rank_fits)),
        MergeDeclaration("cart", "centred task vectors, low-rank, added to the average",
                         (_scale(2.0, "lambda multiplying the sum of low-rank centred task vectors", ()),
                          HyperParameter("rank", float, 0.12, "rank fraction of r kept per centred task vector, in [0, 1]",
                                         partial(check_fraction, allow_zero=True)),
                          _svd("each centred task vector's rank-k decomposition")),
                         meaningful_when=(_lowrank_decomposes_something,)),
        MergeDeclaration("iso_c", "isotropic merge: flattened spectrum of the task-vector sum",
                         (_scale(1.0, "coefficient of the Iso-C delta", _SVD_SCALE_GRID),), meaningful_when=_SCALED),
        MergeDeclaration("iso_cts", "isotropic merge in common and task-specific subspaces",
                         (_scale(1.0, "coefficient of the Iso-CTS delta", _SVD_SCALE_GRID),
                          HyperParameter("common", float, 0.8, "common-space fraction of r, in [0, 1]; 1 = Iso-C",
                                         partial(check_fraction, allow_zero=True))),
                         meaningful_when=_SCALED),
    )
}


def merge_declaration(name: str) -> MergeDeclaration:
    declaration = lookup("merging method", MERGE_DECLARATIONS, name)
    assert isinstance(declaration, MergeDeclaration)
    return declaration
