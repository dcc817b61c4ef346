"""Adaptation methods by results-table name: each declaration (``declarations/adaptation.py``, torch-free) bound to
the decomposition AdaRank masks, and ``build_adaptive``, the step-0 adaptive model of a method."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

import torch

from mergeflow.adaptation.components import Decomposition, decompose_cart, decompose_iso_cts, decompose_ta, decompose_tsv_m
from mergeflow.adaptation.model import AdaptiveMerge, Granularity, adamerging
from mergeflow.declarations.adaptation import ADAMERGING_ONLY, ADAPT_DECLARATIONS, ADAPT_METHODS, LEARN, adapt_declaration
from mergeflow.declarations.common import check_choice
from mergeflow.errors import MergeflowError
from mergeflow.merging.common import TaskVectors

Decompose = Callable[..., Decomposition]  # (base, task vectors, **the method's hyperparameters but prior)

DECOMPOSITIONS: dict[str, Decompose | None] = {
    "adamerging": None,  # plain task vectors, no masks
    "adarank_ta": decompose_ta,
    "adarank_cart": decompose_cart,
    "adarank_tsv_m": decompose_tsv_m,
    "adarank_iso_cts": decompose_iso_cts,
}
assert set(DECOMPOSITIONS) == set(ADAPT_DECLARATIONS), "every declared adaptation method is bound, and only those"
__all__ = ["ADAPT_METHODS", "DECOMPOSITIONS", "build_adaptive"]


def build_adaptive(method: str, base: Mapping[str, torch.Tensor], task_vectors: TaskVectors, *, learn: str = "both",
                   **hyperparameters: object) -> AdaptiveMerge:
    """The step-0 adaptive model of ``method`` (a results-table name) with its declared hyperparameters (``prior``,
    ``rank``, ``common``, ``granularity``; unset or None = the declared default); ``learn``: see the declarations."""
    declaration = adapt_declaration(method)
    learn = check_choice("learn", learn, LEARN)
    settings = declaration.resolve(hyperparameters, none_is_unset=True)
    prior = cast(float, settings.pop("prior"))  # validated as a float
    decompose = DECOMPOSITIONS[method]
    if decompose is None:
        if learn != "both":
            raise MergeflowError(ADAMERGING_ONLY)
        return adamerging(base, task_vectors, granularity=cast(Granularity, settings["granularity"]), prior=prior)
    return AdaptiveMerge(decompose(base, task_vectors, **settings), learn_lambda=learn in ("both", "lambda"),
                         learn_masks=learn in ("both", "masks"), prior=prior, granularity="layer", clamp=False)
