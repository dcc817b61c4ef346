"""The trained per-input methods as users see them (torch-free): results-table ``method``/``router`` names, summary
and hyperparameters. ``dynamic/methods.py`` binds each to its fit; params.yaml's ``dynamic.<method>`` blocks list only
what differs from these defaults."""

from __future__ import annotations

from dataclasses import dataclass

from mergeflow.declarations.common import (
    HyperParameter,
    ServedDeclaration,
    check_dropout,
    check_non_negative_int,
    check_number,
    check_positive,
    check_positive_int,
    lookup,
)
from mergeflow.errors import MergeflowError


@dataclass(frozen=True)
class DynamicDeclaration(ServedDeclaration):
    """A trained per-input method's declaration (its registry's entries are exactly these)."""


def _router_layers(name: str, value: object) -> int:
    number = check_non_negative_int(name, value)
    if number > 2:
        raise MergeflowError(f"{name} must be 0, 1 or 2, got {value!r}")
    return number


def _model_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise MergeflowError(f"{name} must name a merged model, got {value!r}")
    return value


_SEED = HyperParameter("seed", int, 0, "seed of the gates' initialisation and the batches", check_non_negative_int)

DYNAMIC_DECLARATIONS: dict[str, DynamicDeclaration] = {
    method.name: method
    for method in (
        DynamicDeclaration("wemoe", "WEMoE: routed MLP task vectors over Task Arithmetic, routers by entropy minimisation", (
            HyperParameter("init_lambda", float, 0.3, "Task Arithmetic's scale outside the MLPs and the routers' initial output",
                           check_number),
            HyperParameter("router_layers", int, 2, "hidden layers of each MLP's router (0, 1 or 2; the authors' 2)", _router_layers),
            HyperParameter("steps", int, 1000, "Adam steps of router training (the final step is kept)", check_non_negative_int),
            HyperParameter("lr", float, 1e-3, "Adam learning rate", check_positive),
            HyperParameter("batch_size", int, 16, "unlabelled test inputs per task per step", check_positive_int),
            _SEED), method="wemoe", router="wemoe"),
        DynamicDeclaration("mow_merging", "MoW-Merging: a task gate's probabilities as per-input coefficients over a static rule", (
            HyperParameter("rule", str, "task_arithmetic", "the static merged model (merge@ or adapt@) the gate and the other sub-layers use",
                           _model_name),
            HyperParameter("sublayers", int, 4, "last attention/MLP sub-layers made per-input (MoW's m; 10 of ViT-B/32's 24)",
                           check_positive_int),
            HyperParameter("samples", int, 64, "unlabelled training inputs per task the gate is trained on", check_positive_int),
            HyperParameter("hidden", int, 256, "the gate's hidden width", check_positive_int),
            HyperParameter("dropout", float, 0.5, "the gate's dropout, in [0, 1)", check_dropout),
            HyperParameter("lr", float, 5e-4, "AdamW learning rate of the gate", check_positive),
            HyperParameter("epochs", int, 50, "gate epochs; the epoch is chosen on validation routing accuracy", check_positive_int),
            HyperParameter("batch_size", int, 1024, "gate training batch", check_positive_int),
            _SEED), method="mow_merging", router="mow"),
    )
}
DYNAMIC_METHODS = tuple(DYNAMIC_DECLARATIONS)


def dynamic_declaration(name: str) -> DynamicDeclaration:
    declaration = lookup("per-input method", DYNAMIC_DECLARATIONS, name)
    assert isinstance(declaration, DynamicDeclaration)
    return declaration
