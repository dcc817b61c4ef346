"""The trained per-input methods (MAD's Table 2/4 baselines), each declared once: results-table names, what it fits,
and its hyperparameters in the merging registry's form (name, type, default, check, help). params.yaml's
``dynamic.<method>`` blocks give only what differs from these defaults; ``resolve`` fills in and checks the rest.

Both methods are scored with the input's dataset head (their papers' protocol and our LoRA rows'); what they decide
without the task label is every input's weights. MoW's gate also names a task (its routing accuracy is reported).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import torch
from torch import nn

from mergeflow.adaptation.batches import batch_sampler
from mergeflow.dynamic.mow import MixtureOfWeights, rule_features
from mergeflow.dynamic.names import TABLE_NAMES
from mergeflow.dynamic.training import minimise_entropy
from mergeflow.dynamic.wemoe import WeightEnsemblingEncoder
from mergeflow.errors import MergeflowError
from mergeflow.lora.twin import load_twin_router, train_twin_router
from mergeflow.merging.common import check_choice, check_fraction, check_non_negative_int, check_number
from mergeflow.merging.registry import HyperParameter, Value
from mergeflow.seeding import torch_generator

Tensor = torch.Tensor
TaskVectors = Mapping[str, Mapping[str, Tensor]]


@dataclass(frozen=True)
class FitInputs:
    """What a method may fit on. ``test_pool(seed)``: every task's unlabelled test inputs (preprocessed; labels are
    never given); ``drawn(split, samples, seed)``: seeded inputs of a training/validation split per task (0 = all);
    ``merged(name)``: a static merged model of the pipeline (the rule MoW builds on)."""

    encoder: nn.Module
    base: Mapping[str, Tensor]
    task_vectors: TaskVectors
    heads: Sequence[Tensor]
    test_pool: Callable[[int], list[Tensor]]
    drawn: Callable[[str, int, int], list[Tensor]]
    merged: Callable[[str], Mapping[str, Tensor]]
    batch_size: int


@dataclass
class Fitted:
    """A fitted per-input model: ``serve(inputs) -> (features, task probabilities or None)``, the tensors it learned
    (saved as the stage's artifact), the bytes it holds, and a JSON-able record of what was fitted."""

    serve: Callable[[Tensor], tuple[Tensor, Tensor | None]]
    learned: dict[str, Tensor]
    nbytes: int
    record: dict[str, Any]


@dataclass(frozen=True)
class DynamicMethod:
    """A trained per-input method: results-table ``method``/``router`` names, its fit, its hyperparameters."""

    name: str
    method: str
    router: str
    summary: str
    fit: Callable[[FitInputs, Mapping[str, Value]], Fitted]
    hyperparameters: tuple[HyperParameter, ...] = field(default=())

    def resolve(self, overrides: Mapping[str, object] | None = None) -> dict[str, Value]:
        """Every hyperparameter: the declared default unless ``overrides`` gives one (checked)."""
        overrides = dict(overrides or {})
        known = {parameter.name: parameter for parameter in self.hyperparameters}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise MergeflowError(f"{self.name} has no hyperparameter {', '.join(unknown)}; it takes {', '.join(known)}")
        return {name: parameter.validate(overrides.get(name, parameter.default)) for name, parameter in known.items()}


def _positive_int(name: str, value: object) -> int:
    number = check_non_negative_int(name, value)
    if number < 1:
        raise MergeflowError(f"{name} must be at least 1, got {value!r}")
    return number


def _positive(name: str, value: object) -> float:
    number = check_number(name, value)
    if number <= 0:
        raise MergeflowError(f"{name} must be > 0, got {value!r}")
    return number


def _name_given(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise MergeflowError(f"{name} must name a merged model, got {value!r}")
    return value


def _router_layers(name: str, value: object) -> int:
    number = check_non_negative_int(name, value)
    if number > 2:
        raise MergeflowError(f"{name} must be 0, 1 or 2, got {value!r}")
    return number


def _fit_wemoe(inputs: FitInputs, hp: Mapping[str, Value]) -> Fitted:
    steps, batch_size, seed = cast(int, hp["steps"]), cast(int, hp["batch_size"]), cast(int, hp["seed"])
    model = WeightEnsemblingEncoder(inputs.encoder, inputs.base, inputs.task_vectors, init_lambda=cast(float, hp["init_lambda"]),
                                    router_layers=cast(int, hp["router_layers"]), generator=torch_generator(seed, "wemoe", "gates"))
    pools = inputs.test_pool(seed)
    log = minimise_entropy(model, list(model.gates.parameters()), inputs.heads, batch_sampler(pools, batch_size, seed),
                           steps, cast(float, hp["lr"]), "wemoe")
    model.eval()
    final = log.losses[-1] if log.losses else None
    return Fitted(lambda x: (model(x), None), model.learned(), model.nbytes(),
                  {"hyperparameters": dict(hp), "final_loss": final, "first_loss": log.losses[0] if log.losses else None,
                   "median_step_seconds": sorted(log.seconds)[len(log.seconds) // 2] if log.seconds else None})


def _fit_mow(inputs: FitInputs, hp: Mapping[str, Value]) -> Fitted:
    seed, samples, batch = cast(int, hp["seed"]), cast(int, hp["samples"]), inputs.batch_size
    rule = inputs.merged(cast(str, hp["rule"]))
    train = [rule_features(inputs.encoder, rule, x, batch) for x in inputs.drawn("train", samples, seed)]
    val = [rule_features(inputs.encoder, rule, x, batch) for x in inputs.drawn("val", 0, seed)]
    trained = train_twin_router(train, val, hidden=cast(int, hp["hidden"]), dropout=cast(float, hp["dropout"]),
                                lr=cast(float, hp["lr"]), epochs=cast(int, hp["epochs"]), batch_size=cast(int, hp["batch_size"]), seed=seed)
    gate = load_twin_router(trained.state, cast(float, hp["dropout"]))
    model = MixtureOfWeights(inputs.encoder, inputs.base, inputs.task_vectors, rule, gate, cast(int, hp["sublayers"]))

    def serve(x: Tensor) -> tuple[Tensor, Tensor]:
        probabilities = model.task_probabilities(x)
        return model.features(x, probabilities), probabilities

    return Fitted(serve, {f"gate.{key}": value for key, value in trained.state.items()}, model.nbytes(),
                  {"hyperparameters": dict(hp), "epoch": trained.epoch, "val_routing_accuracy": trained.val_accuracy[trained.epoch],
                   "dynamic_keys": len(model.dynamic)})


_SEED = HyperParameter("seed", int, 0, "seed of the gates' initialisation and the batches", check_non_negative_int)

DYNAMIC_REGISTRY: dict[str, DynamicMethod] = {
    method.name: method
    for method in (
        DynamicMethod("wemoe", *TABLE_NAMES["wemoe"], "WEMoE: routed MLP task vectors over Task Arithmetic, routers by entropy minimisation",
                      _fit_wemoe, (
                          HyperParameter("init_lambda", float, 0.3, "Task Arithmetic's scale outside the MLPs and the routers' initial output",
                                         check_number),
                          HyperParameter("router_layers", int, 2, "hidden layers of each MLP's router (0, 1 or 2; the authors' 2)",
                                         _router_layers),
                          HyperParameter("steps", int, 1000, "Adam steps of router training (the final step is kept)", check_non_negative_int),
                          HyperParameter("lr", float, 1e-3, "Adam learning rate", _positive),
                          HyperParameter("batch_size", int, 16, "unlabelled test inputs per task per step", _positive_int),
                          _SEED)),
        DynamicMethod("mow_merging", *TABLE_NAMES["mow_merging"], "MoW-Merging: a task gate's probabilities as per-input coefficients over a static rule",
                      _fit_mow, (
                          HyperParameter("rule", str, "task_arithmetic", "the static merged model (merge@ or adapt@) the gate and the other sub-layers use",
                                         _name_given),
                          HyperParameter("sublayers", int, 4, "last attention/MLP sub-layers made per-input (MoW's m; 10 of ViT-B/32's 24)",
                                         _positive_int),
                          HyperParameter("samples", int, 64, "unlabelled training inputs per task the gate is trained on", _positive_int),
                          HyperParameter("hidden", int, 256, "the gate's hidden width", _positive_int),
                          HyperParameter("dropout", float, 0.5, "the gate's dropout", partial(check_fraction, allow_zero=True)),
                          HyperParameter("lr", float, 5e-4, "AdamW learning rate of the gate", _positive),
                          HyperParameter("epochs", int, 50, "gate epochs; the epoch is chosen on validation routing accuracy", _positive_int),
                          HyperParameter("batch_size", int, 1024, "gate training batch", _positive_int),
                          _SEED)),
    )
}
DYNAMIC_METHODS = tuple(DYNAMIC_REGISTRY)
assert set(DYNAMIC_METHODS) == set(TABLE_NAMES), "every per-input method has its results-table names in dynamic/names.py"


def get_dynamic_method(name: str) -> DynamicMethod:
    check_choice("per-input method", name, DYNAMIC_METHODS)
    return DYNAMIC_REGISTRY[name]
