"""Adaptation methods by results-table name, each declared once: which decomposition it adapts, and its
hyperparameters (name, type, default, check, help) in the same form as the merging registry's.

``learn`` selects the Table 6 ablation of AdaRank: "both" (masks and layer-wise lambda, the default), "lambda"
(coefficients only: layer-wise, unclamped, over the base's components) or "masks" (masks only, lambda fixed at the
prior). AdaMerging always learns clamped coefficients over plain task vectors and has no masks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import cast

import torch

from mergeflow.adaptation.components import Decomposition, decompose_cart, decompose_iso_cts, decompose_ta, decompose_tsv_m
from mergeflow.adaptation.model import GRANULARITIES, AdaptiveMerge, Granularity, adamerging
from mergeflow.errors import MergeflowError
from mergeflow.merging.common import TaskVectors, check_choice, check_fraction, check_number
from mergeflow.merging.registry import HyperParameter, Value

LEARN = ("both", "lambda", "masks")
Decompose = Callable[..., Decomposition]  # (base, task vectors, **the method's hyperparameters but prior)


@dataclass(frozen=True)
class AdaptMethod:
    """An adaptation method: the decomposition AdaRank masks (None: AdaMerging's plain task vectors) and its
    hyperparameters; ``prior`` (the initial coefficient) is every method's. ``refuses`` names settings that mean
    nothing for this method, with the reason given to whoever sets them."""

    name: str
    summary: str
    decompose: Decompose | None
    hyperparameters: tuple[HyperParameter, ...]
    refuses: Mapping[str, str] = field(default_factory=dict)

    def resolve(self, overrides: Mapping[str, object]) -> dict[str, Value]:
        """Every hyperparameter: the declared default unless ``overrides`` (None values mean "unset") gives one."""
        given = {key for key, value in overrides.items() if value is not None}
        for key in sorted(given & set(self.refuses)):
            raise MergeflowError(f"{self.name}: {self.refuses[key]}")
        known = {parameter.name: parameter for parameter in self.hyperparameters}
        unknown = sorted(given - set(known))
        if unknown:
            raise MergeflowError(f"{self.name} has no hyperparameter {', '.join(unknown)}; it takes {', '.join(known)}")
        return {name: parameter.validate(parameter.default if overrides.get(name) is None else overrides[name])
                for name, parameter in known.items()}


def _prior(default: float, origin: str) -> HyperParameter:
    return HyperParameter("prior", float, default, f"initial coefficient lambda ({origin})", check_number)


_FRACTION = partial(check_fraction, allow_zero=True)
_ADAMERGING_ONLY = "adamerging learns its coefficients only: leave learn, rank and common unset"
_LAYER_WISE = {"granularity": "AdaRank learns layer-wise coefficients; granularity applies to adamerging"}

ADAPT_REGISTRY: dict[str, AdaptMethod] = {
    method.name: method
    for method in (
        AdaptMethod("adamerging", "AdaMerging: clamped coefficients over plain task vectors", None, (
            _prior(0.3, "AdaMerging's, clamped to [0, 1]"),
            HyperParameter("granularity", str, "layer", "one lambda per (task, layer) or per task",
                           partial(check_choice, choices=GRANULARITIES))), {"rank": _ADAMERGING_ONLY, "common": _ADAMERGING_ONLY}),
        AdaptMethod("adarank_ta", "AdaRank over Task Arithmetic's components", decompose_ta, (
            _prior(0.3, "Task Arithmetic's scale"),
            HyperParameter("rank", float, 1.0, "fraction of each task vector's components kept at step 0", _FRACTION)), _LAYER_WISE),
        AdaptMethod("adarank_cart", "AdaRank over CART's centred components", decompose_cart, (
            _prior(2.3, "the authors' ViT-B/32 8-task config"),
            HyperParameter("rank", float, 0.16, "fraction of each centred task vector's components kept at step 0", _FRACTION)),
            _LAYER_WISE),
        AdaptMethod("adarank_tsv_m", "AdaRank over TSV-M's components", decompose_tsv_m, (
            _prior(1.0, "static TSV-M's scale"),
            HyperParameter("rank", float, None, "per-task rank fraction of r; none = int(r/T), the authors' rule",
                           partial(check_fraction, allow_zero=False), optional=True)), _LAYER_WISE),
        AdaptMethod("adarank_iso_cts", "AdaRank over Iso-CTS's components", decompose_iso_cts, (
            _prior(1.0, "static Iso-CTS's scale"),
            HyperParameter("common", float, 0.8, "common-subspace fraction of r; step 0 = static Iso-CTS", _FRACTION)), _LAYER_WISE),
    )
}
ADAPT_METHODS = tuple(ADAPT_REGISTRY)


def get_adapt_method(name: str) -> AdaptMethod:
    check_choice("adaptation method", name, ADAPT_METHODS)
    return ADAPT_REGISTRY[name]


def build_adaptive(method: str, base: Mapping[str, torch.Tensor], task_vectors: TaskVectors, *, learn: str = "both",
                   **hyperparameters: object) -> AdaptiveMerge:
    """The step-0 adaptive model of ``method`` (a results-table name) with its declared hyperparameters (``prior``,
    ``rank``, ``common``, ``granularity``; unset or None = the declared default); see the module docstring for ``learn``."""
    spec = get_adapt_method(method)
    learn = check_choice("learn", learn, LEARN)
    settings = spec.resolve(hyperparameters)
    prior = cast(float, settings.pop("prior"))  # validated as a float
    if spec.decompose is None:
        if learn != "both":
            raise MergeflowError(_ADAMERGING_ONLY)
        return adamerging(base, task_vectors, granularity=cast(Granularity, settings["granularity"]), prior=prior)
    return AdaptiveMerge(spec.decompose(base, task_vectors, **settings), learn_lambda=learn in ("both", "lambda"),
                         learn_masks=learn in ("both", "masks"), prior=prior, granularity="layer", clamp=False)
