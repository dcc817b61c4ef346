"""The trained per-input methods (MAD's Table 2/4 baselines): each declaration (``declarations/dynamic.py``,
torch-free: names and hyperparameters) bound to what it fits.

Both methods are scored with the input's dataset head (their papers' protocol and our LoRA rows'); what they decide
without the task label is every input's weights. MoW's gate also names a task (its routing accuracy is reported).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from mergeflow.adaptation.batches import batch_sampler
from mergeflow.declarations.common import DeclaredMethod, Setting
from mergeflow.declarations.dynamic import DYNAMIC_DECLARATIONS, DynamicDeclaration, dynamic_declaration
from mergeflow.dynamic.mow import MixtureOfWeights, rule_features
from mergeflow.dynamic.training import minimise_entropy
from mergeflow.dynamic.wemoe import WeightEnsemblingEncoder
from mergeflow.lora.twin import load_twin_router, train_twin_router
from mergeflow.models.head import Head
from mergeflow.runtime.device import CPU, autocast_context, to_cpu
from mergeflow.seeding import torch_generator

Tensor = torch.Tensor
TaskVectors = Mapping[str, Mapping[str, Tensor]]


@dataclass(frozen=True)
class FitInputs:
    """What a method may fit on. ``test_pool(seed)``: every task's unlabelled test inputs (preprocessed; labels are
    never given); ``drawn(split, samples, seed)``: seeded inputs of a training/validation split per task (0 = all);
    ``merged(name)``: a static merged model of the pipeline (the rule MoW builds on). The encoders run on ``device``
    under ``autocast``; the gates MoW trains (small MLPs on cached features) and what is served back stay on the CPU."""

    encoder: nn.Module
    base: Mapping[str, Tensor]
    task_vectors: TaskVectors
    heads: Sequence[Head]
    test_pool: Callable[[int], list[Tensor]]
    drawn: Callable[[str, int, int], list[Tensor]]
    merged: Callable[[str], Mapping[str, Tensor]]
    batch_size: int
    device: torch.device = CPU
    autocast: str = "none"


@dataclass
class Fitted:
    """A fitted per-input model: ``serve(inputs) -> (features, task probabilities or None)``, the tensors it learned
    (saved as the stage's artifact), the bytes it holds, and a JSON-able record of what was fitted."""

    serve: Callable[[Tensor], tuple[Tensor, Tensor | None]]
    learned: dict[str, Tensor]
    nbytes: int
    record: dict[str, Any]


@dataclass(frozen=True)
class DynamicMethod(DeclaredMethod):
    """A declared per-input method bound to its fit."""

    declaration: DynamicDeclaration
    fit: Callable[[FitInputs, Mapping[str, Setting]], Fitted]


def _fit_wemoe(inputs: FitInputs, hp: Mapping[str, Setting]) -> Fitted:
    steps, batch_size, seed = cast(int, hp["steps"]), cast(int, hp["batch_size"]), cast(int, hp["seed"])
    device, autocast = inputs.device, inputs.autocast
    model = WeightEnsemblingEncoder(inputs.encoder, inputs.base, inputs.task_vectors, init_lambda=cast(float, hp["init_lambda"]),
                                    router_layers=cast(int, hp["router_layers"]), generator=torch_generator(seed, "wemoe", "gates"))
    model.to(device)
    pools = inputs.test_pool(seed)
    log = minimise_entropy(model, list(model.gates.parameters()), inputs.heads, batch_sampler(pools, batch_size, seed),
                           steps, cast(float, hp["lr"]), "wemoe", device=device, autocast=autocast)
    model.eval()
    final = log.losses[-1] if log.losses else None

    def serve(x: Tensor) -> tuple[Tensor, None]:
        with autocast_context(autocast, device):
            features = model(x.to(device))
        return (features.cpu() if autocast == "none" else features.float().cpu()), None

    return Fitted(serve, to_cpu(model.learned()), model.nbytes(),
                  {"hyperparameters": dict(hp), "final_loss": final, "first_loss": log.losses[0] if log.losses else None,
                   "median_step_seconds": sorted(log.seconds)[len(log.seconds) // 2] if log.seconds else None})


def _fit_mow(inputs: FitInputs, hp: Mapping[str, Setting]) -> Fitted:
    seed, samples, batch = cast(int, hp["seed"]), cast(int, hp["samples"]), inputs.batch_size
    rule, device, autocast = inputs.merged(cast(str, hp["rule"])), inputs.device, inputs.autocast
    train = [rule_features(inputs.encoder, rule, x, batch, device, autocast) for x in inputs.drawn("train", samples, seed)]
    val = [rule_features(inputs.encoder, rule, x, batch, device, autocast) for x in inputs.drawn("val", 0, seed)]
    trained = train_twin_router(train, val, hidden=cast(int, hp["hidden"]), dropout=cast(float, hp["dropout"]),
                                lr=cast(float, hp["lr"]), epochs=cast(int, hp["epochs"]), batch_size=cast(int, hp["batch_size"]), seed=seed)
    gate = load_twin_router(trained.state, cast(float, hp["dropout"]))
    model = MixtureOfWeights(inputs.encoder, inputs.base, inputs.task_vectors, rule, gate, cast(int, hp["sublayers"]),
                             device=device, autocast=autocast)

    def serve(x: Tensor) -> tuple[Tensor, Tensor]:
        probabilities = model.task_probabilities(x)
        return model.features(x, probabilities), probabilities

    return Fitted(serve, {f"gate.{key}": value for key, value in trained.state.items()}, model.nbytes(),
                  {"hyperparameters": dict(hp), "epoch": trained.epoch, "val_routing_accuracy": trained.val_accuracy[trained.epoch],
                   "dynamic_keys": len(model.dynamic)})


_FITS: dict[str, Callable[[FitInputs, Mapping[str, Setting]], Fitted]] = {"wemoe": _fit_wemoe, "mow_merging": _fit_mow}
assert set(_FITS) == set(DYNAMIC_DECLARATIONS), "every declared per-input method is bound to its fit, and only those"
DYNAMIC_REGISTRY: dict[str, DynamicMethod] = {name: DynamicMethod(declaration, _FITS[name]) for name, declaration in DYNAMIC_DECLARATIONS.items()}


def get_dynamic_method(name: str) -> DynamicMethod:
    return DYNAMIC_REGISTRY[dynamic_declaration(name).name]
