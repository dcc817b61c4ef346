"""The LoRA-expert methods as users see them (torch-free): results-table ``method``/``router`` names, summary and
hyperparameters. ``lora/methods.py`` binds each to its calibration and policy (its registry has exactly these keys);
params.py validates ``lora.methods`` and the ``lora.<method>`` blocks with them, and a block lists only what differs
from these defaults (``{}`` for none). The results table checks its rows with ``TABLE_NAMES``.

The defaults are what the pipeline runs on vision8: TR-Merging's vision setting where the paper gives one, the
official code's values for Twin-Merging and DaWin (docs/methods.md §4, §12, §13, §2)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from mergeflow.declarations.common import (
    HyperParameter,
    ServedDeclaration,
    check_choice,
    check_dropout,
    check_fraction,
    check_non_negative_int,
    check_number,
    check_positive,
    check_positive_int,
    lookup,
)
from mergeflow.errors import MergeflowError


@dataclass(frozen=True)
class LoraDeclaration(ServedDeclaration):
    """A LoRA-expert method's declaration (its registry's entries are exactly these)."""


def _boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise MergeflowError(f"{name} must be true or false, got {value!r}")
    return value


def _source(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise MergeflowError(f"{name} must name an encoder (base, package:NAME, a folder or a Hugging Face id), got {value!r}")
    return value


def _seed(what: str) -> HyperParameter:
    return HyperParameter("seed", int, 0, what, check_non_negative_int)


LORA_DECLARATIONS: dict[str, LoraDeclaration] = {
    method.name: method
    for method in (
        LoraDeclaration("experts", "task-known: each input through its own task's LoRA expert", method="finetuned", router="oracle"),
        LoraDeclaration("task_arithmetic", "one static merge: every expert at lora.task_arithmetic.scale", (
            HyperParameter("scale", float, 0.3, "every expert's coefficient (TR-Merging's Task Arithmetic baseline)", check_number),),
            method="task_arithmetic", router="none"),
        LoraDeclaration("tr", "TR-Merging: mean cosine to M sample embeddings per task, temperature and top-K on validation", (
            HyperParameter("router_encoder", str, "base", "what scores the inputs: base (the suite's pretrained encoder) or a "
                           "sentence embedder (package:NAME, a folder, a Hugging Face id; text suites)", _source),
            HyperParameter("samples", int, 64, "M embedded training inputs per task", check_positive_int),
            _seed("seed of the training and validation draws"),
            HyperParameter("form", str, "written", "written: softmax(softmax(s) / tau) (Eqs. 6-8); scaled: softmax(s / tau) (Eq. 13)",
                           partial(check_choice, choices=("written", "scaled"))),
            HyperParameter("renormalize", bool, False, "rescale the kept top-K weights to sum 1 (Eq. 9 does not)", _boolean),
            HyperParameter("temperatures", float, (0.001, 0.003, 0.01, 0.03, 0.1, 1.0),
                           "candidate tau, chosen on validation together with top_k", check_positive, many=True),
            HyperParameter("top_k", int, (1, 2, 3, 8), "candidate K (experts kept per input), chosen with temperatures; "
                           "at most the suite's task count", check_positive_int, many=True),
            HyperParameter("val_samples", int, 100, "validation inputs per task the (tau, K) choice is scored on", check_positive_int)),
            method="tr_merging", router="tr"),
        LoraDeclaration("twin", "Twin-Merging: shared expert plus exclusive vectors mixed by a trained MLP router", (
            HyperParameter("shared_scale", float, 0.29, "the shared expert is Task Arithmetic at this scale (the authors' 0.29)",
                           check_number),
            HyperParameter("density", float, 0.1, "fraction of each layer's rank the exclusive vectors keep (the authors' mask_rate 0.9)",
                           partial(check_fraction, allow_zero=False)),
            HyperParameter("samples", int, 1000, "router training inputs per task (the shared expert's features)", check_positive_int),
            HyperParameter("hidden", int, 256, "the router's hidden width (2 x the feature width, as the authors' 768 -> 1536)",
                           check_positive_int),
            HyperParameter("dropout", float, 0.5, "the router's dropout, in [0, 1)", check_dropout),
            HyperParameter("lr", float, 5e-4, "AdamW learning rate of the router", check_positive),
            HyperParameter("epochs", int, 50, "router epochs; the epoch is chosen on validation routing accuracy", check_positive_int),
            HyperParameter("batch_size", int, 1024, "router training batch", check_positive_int),
            _seed("seed of the draws and of the router's training")),
            method="twin_merging", router="twin"),
        LoraDeclaration("dawin", "DaWin: coefficients from each expert's prediction entropy, per input or per dataset", (
            HyperParameter("scale", float, 0.3, "coefficients scale * T * softmax(-H)", check_positive),
            HyperParameter("head", str, "dataset", "dataset: entropy under the input's dataset head (as published); expert: each "
                           "expert's own head", partial(check_choice, choices=("dataset", "expert"))),
            HyperParameter("mode", str, "per_input", "per_input, or dataset_mean (one merge per dataset: the authors' multi-task default)",
                           partial(check_choice, choices=("per_input", "dataset_mean")))),
            method="dawin", router="dawin"),
        LoraDeclaration("mad", "MAD: Mahalanobis routing to one expert on the weight-averaged model's features", (
            HyperParameter("samples", int, 64, "training inputs per task the Gaussians are fitted on", check_positive_int),
            HyperParameter("eps", float, 1e-4, "ridge added to every covariance diagonal", check_positive),
            _seed("seed of the training draw")),
            method="finetuned", router="mad"),
    )
}
LORA_METHODS: tuple[str, ...] = tuple(LORA_DECLARATIONS)
# method -> (results-table method, router)
TABLE_NAMES: dict[str, tuple[str, str]] = {name: (d.method, d.router) for name, d in LORA_DECLARATIONS.items()}


def lora_declaration(name: str) -> LoraDeclaration:
    declaration = lookup("LoRA method", LORA_DECLARATIONS, name)
    assert isinstance(declaration, LoraDeclaration)
    return declaration
