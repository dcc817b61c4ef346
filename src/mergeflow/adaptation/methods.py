"""Adaptation methods by results-table name: which decomposition, which parameters learn, which initial values.

``learn`` selects the Table 6 ablation of AdaRank: "both" (masks and layer-wise lambda, the default), "lambda"
(coefficients only: layer-wise, unclamped, over the base's components) or "masks" (masks only, lambda fixed at the
prior). AdaMerging always learns clamped coefficients over plain task vectors and has no masks.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mergeflow.adaptation.components import Decomposition, decompose_cart, decompose_iso_cts, decompose_ta, decompose_tsv_m
from mergeflow.adaptation.model import AdaptiveMerge, Granularity, adamerging
from mergeflow.errors import MergeflowError
from mergeflow.merging.common import TaskVectors, check_choice

ADAPT_METHODS = ("adamerging", "adarank_ta", "adarank_cart", "adarank_tsv_m", "adarank_iso_cts")
LEARN = ("both", "lambda", "masks")


def _decomposition(method: str, base: Mapping[str, torch.Tensor], task_vectors: TaskVectors, rank: float | None,
                   common: float | None) -> Decomposition:
    if method == "adarank_ta":
        return decompose_ta(base, task_vectors, 1.0 if rank is None else rank)
    if method == "adarank_cart":
        return decompose_cart(base, task_vectors, 0.16 if rank is None else rank)
    if method == "adarank_tsv_m":
        return decompose_tsv_m(base, task_vectors, rank)
    return decompose_iso_cts(base, task_vectors, 0.8 if common is None else common)


def build_adaptive(
    method: str,
    base: Mapping[str, torch.Tensor],
    task_vectors: TaskVectors,
    *,
    prior: float,
    rank: float | None = None,
    common: float | None = None,
    granularity: Granularity = "layer",
    learn: str = "both",
) -> AdaptiveMerge:
    """The step-0 adaptive model of ``method`` (a results-table name); see the module docstring for ``learn``."""
    check_choice("adaptation method", method, ADAPT_METHODS)
    learn = check_choice("learn", learn, LEARN)
    if method == "adamerging":
        if learn != "both" or rank is not None or common is not None:
            raise MergeflowError("adamerging learns its coefficients only: leave learn, rank and common unset")
        return adamerging(base, task_vectors, granularity=granularity, prior=prior)
    if granularity != "layer":
        raise MergeflowError(f"{method} learns layer-wise coefficients (AdaRank); granularity applies to adamerging")
    decomposition = _decomposition(method, base, task_vectors, rank, common)
    return AdaptiveMerge(decomposition, learn_lambda=learn in ("both", "lambda"), learn_masks=learn in ("both", "masks"),
                         prior=prior, granularity="layer", clamp=False)
