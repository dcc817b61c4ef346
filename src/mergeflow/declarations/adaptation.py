"""The adaptation methods as users see them (torch-free): results-table name, summary, hyperparameters (``prior``,
the initial coefficient, is every method's) and the settings that mean nothing for a method. ``adaptation/methods.py``
binds each name to the decomposition AdaRank masks (none for AdaMerging).

``learn`` selects the Table 6 ablation of AdaRank: "both" (masks and layer-wise lambda, the default), "lambda"
(coefficients only) or "masks" (masks only, lambda fixed at the prior). AdaMerging always learns clamped
coefficients over plain task vectors and has no masks.
"""

from __future__ import annotations

from functools import partial

from mergeflow.declarations.common import Declaration, HyperParameter, check_choice, check_fraction, check_number, lookup

LEARN = ("both", "lambda", "masks")
GRANULARITIES = ("layer", "task")


def _prior(default: float, origin: str) -> HyperParameter:
    return HyperParameter("prior", float, default, f"initial coefficient lambda ({origin})", check_number)


_FRACTION = partial(check_fraction, allow_zero=True)
ADAMERGING_ONLY = "adamerging learns its coefficients only: leave learn, rank and common unset"
_LAYER_WISE = {"granularity": "AdaRank learns layer-wise coefficients; granularity applies to adamerging"}

ADAPT_DECLARATIONS: dict[str, Declaration] = {
    method.name: method
    for method in (
        Declaration("adamerging", "AdaMerging: clamped coefficients over plain task vectors", (
            _prior(0.3, "AdaMerging's, clamped to [0, 1]"),
            HyperParameter("granularity", str, "layer", "one lambda per (task, layer) or per task",
                           partial(check_choice, choices=GRANULARITIES))), {"rank": ADAMERGING_ONLY, "common": ADAMERGING_ONLY}),
        Declaration("adarank_ta", "AdaRank over Task Arithmetic's components", (
            _prior(0.3, "Task Arithmetic's scale"),
            HyperParameter("rank", float, 1.0, "fraction of each task vector's components kept at step 0", _FRACTION)), _LAYER_WISE),
        Declaration("adarank_cart", "AdaRank over CART's centred components", (
            _prior(2.3, "the authors' ViT-B/32 8-task config"),
            HyperParameter("rank", float, 0.16, "fraction of each centred task vector's components kept at step 0", _FRACTION)),
            _LAYER_WISE),
        Declaration("adarank_tsv_m", "AdaRank over TSV-M's components", (
            _prior(1.0, "static TSV-M's scale"),
            HyperParameter("rank", float, None, "per-task rank fraction of r; none = int(r/T), the authors' rule",
                           partial(check_fraction, allow_zero=False), optional=True)), _LAYER_WISE),
        Declaration("adarank_iso_cts", "AdaRank over Iso-CTS's components", (
            _prior(1.0, "static Iso-CTS's scale"),
            HyperParameter("common", float, 0.8, "common-subspace fraction of r; step 0 = static Iso-CTS", _FRACTION)), _LAYER_WISE),
    )
}
ADAPT_METHODS = tuple(ADAPT_DECLARATIONS)


def adapt_declaration(name: str) -> Declaration:
    return lookup("adaptation method", ADAPT_DECLARATIONS, name)
