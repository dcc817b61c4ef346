"""The LoRA-expert methods (stage serve_lora@METHOD): each declaration (``declarations/lora.py``, torch-free:
results-table names, summary, hyperparameters) bound to what it fits on training and validation inputs
(``calibrate``: TR-Merging's samples and its temperature and top-K, Twin's router, MAD's Gaussians; the others only
record their settings) and the policy it serves with (``build_policy``). The stages (tasks/calibrate_lora.py,
tasks/evaluate_lora.py) read the artifacts, look the method up here and write what it returns; test data never
reaches ``calibrate``.

``calibrate`` gets the method's resolved settings (every declared hyperparameter: params.yaml's ``lora.<method>``
block over the declared defaults, ``LoraParams.settings``); what it returns, (tensors, JSON-able settings), is the
policy file ``build_policy`` reads back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mergeflow.declarations.common import DeclaredMethod
from mergeflow.declarations.lora import LORA_METHODS, LoraDeclaration, lora_declaration
from mergeflow.errors import MergeflowError
from mergeflow.lora.bank import FactorBank
from mergeflow.lora.mixed_encoder import MixedEncoder
from mergeflow.lora.policies import (
    ConstantPolicy,
    DawinPolicy,
    ExpertPolicy,
    MadPolicy,
    Policy,
    TrPolicy,
    TwinPolicy,
    dataset_mean_policy,
    head_logits,
)
from mergeflow.lora.router_encoder import RouterEmbedder
from mergeflow.lora.twin import load_twin_router, train_twin_router, twin_encoder
from mergeflow.models.head import Head
from mergeflow.routing.features import extract_features
from mergeflow.routing.routers import Router, fit_router
from mergeflow.routing.served import InputTransform, tensor_bytes
from mergeflow.routing.stream import TestStream
from mergeflow.runtime.device import CPU
from mergeflow.selection import Selection, describe, select_per_task

Tensor = torch.Tensor
Calibration = tuple[dict[str, Tensor], dict[str, Any]]  # (tensors, settings): the method's policy file


@dataclass(frozen=True)
class CalibrationInputs:
    """What a method that fits something may read: the experts as a factor bank over the base ``encoder`` module,
    its input convention, and callables for the rest, called where they are needed. ``drawn(split, samples, seed)``:
    (inputs, labels) of each task's training or validation split, ``samples`` drawn by (seed, task) (None = the
    whole split in stored order); ``heads()``: the tasks' classification heads; ``router_encoder()``: TR-Merging's
    separate router encoder, or None for the base encoder. The mixed encoders run on ``device`` under ``autocast``
    (``lora.mixed_encoder``); everything else stays on the CPU."""

    tasks: Sequence[str]
    bank: FactorBank
    encoder: nn.Module
    preprocess: InputTransform
    drawn: Callable[[str, int | None, int], list[tuple[Tensor, Tensor]]]
    heads: Callable[[], list[Head]]
    router_encoder: Callable[[], RouterEmbedder | None]
    batch_size: int
    device: torch.device = CPU
    autocast: str = "none"

    def images(self, split: str, samples: int | None, seed: int) -> list[Tensor]:
        return [images for images, _ in self.drawn(split, samples, seed)]


@dataclass(frozen=True)
class ServingInputs:
    """What a policy is built from besides its calibration file: the bank and base encoder module, the tasks' heads,
    TR-Merging's router encoder (called once, by TR), and the labelled test stream, which only DaWin's
    ``dataset_mean`` mode reads (one merge per dataset: a task-ID assumption, as the authors'). The mixed encoders run
    on ``device`` under ``autocast``."""

    tasks: Sequence[str]
    bank: FactorBank
    encoder: nn.Module
    preprocess: InputTransform
    heads: list[Head]
    router_encoder: Callable[[], RouterEmbedder | None]
    stream: TestStream
    batch_size: int
    device: torch.device = CPU
    autocast: str = "none"


Calibrate = Callable[[Mapping[str, Any], CalibrationInputs | None], Calibration]
BuildPolicy = Callable[[Mapping[str, Tensor], Mapping[str, Any], ServingInputs], tuple[Policy, int]]


@dataclass(frozen=True)
class LoraMethod(DeclaredMethod):
    """A declared LoRA-expert method bound to its two halves, whether it fits anything (if not, its stage loads
    neither the experts nor the encoder and ``calibrate`` gets None) and whether calibration needs autograd (otherwise
    it runs under ``torch.no_grad()``). ``build_policy`` returns the policy and the bytes its router holds beyond the
    encoder and the heads."""

    declaration: LoraDeclaration
    calibrate: Calibrate
    build_policy: BuildPolicy
    fits: bool = True
    needs_grad: bool = False


def _prefixed(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {key.removeprefix(prefix): value for key, value in tensors.items() if key.startswith(prefix)}


def _mixed(inputs: CalibrationInputs | ServingInputs) -> MixedEncoder:
    """The base encoder with the experts made mixable, on the inputs' device."""
    return MixedEncoder(inputs.encoder, inputs.bank, device=inputs.device, autocast=inputs.autocast)


def _embed(encoder: MixedEncoder, preprocess: InputTransform, coefficients: Tensor, images: Tensor, batch_size: int) -> Tensor:
    """Features of ``images`` through the encoder with one coefficient row for every input."""
    return extract_features(lambda batch: encoder(preprocess(batch), coefficients.expand(len(batch), -1)), images, batch_size)


def choose_tr_routing(policy: TrPolicy, heads: Sequence[Head], pixels: Tensor, labels: Tensor, truth: Tensor,
                      temperatures: Sequence[float], top_ks: Sequence[int], batch_size: int) -> Selection[tuple[float, int]]:
    """TR-Merging's (temperature, top_k) on validation: the pair whose routed model classifies most of ``pixels``
    (preprocessed, every task's, with their ``labels`` and true task indices ``truth``, scored with the true task's
    head) right. The router's scores are computed once; the grid runs over temperatures within each top-K, and ties
    go to the earlier pair. ``policy``'s temperature and k are left at the grid's last pair."""
    scores = torch.cat([policy.scores(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)])

    def accuracy(_: str, choice: tuple[float, int]) -> float:
        policy.temperature, policy.k = choice
        right = 0
        for first in range(0, len(pixels), batch_size):
            rows = slice(first, first + batch_size)
            weights = policy.weights(scores[rows])
            features = policy.encoder(pixels[rows], weights)
            right += int((head_logits(features, heads, truth[rows]) == labels[rows]).sum())
        return right / len(pixels)

    grid = [(t, k) for k in top_ks for t in temperatures]
    return select_per_task(["all"], grid, accuracy)


def _fitted(fit: Callable[[Mapping[str, Any], CalibrationInputs], Calibration]) -> Calibrate:
    def calibrate(settings: Mapping[str, Any], inputs: CalibrationInputs | None) -> Calibration:
        if inputs is None:
            raise MergeflowError("this LoRA method fits on the experts and the encoder: give it their inputs")
        return fit(settings, inputs)

    return calibrate


def _settings_only(record: Callable[[Mapping[str, Any]], dict[str, Any]]) -> Calibrate:
    return lambda settings, _: ({}, record(settings))


def _calibrate_tr(tr: Mapping[str, Any], inputs: CalibrationInputs) -> Calibration:
    """M embeddings per task (the base encoder's, or the router encoder's), then temperature and top-K on validation."""
    tasks, batch, preprocess = inputs.tasks, inputs.batch_size, inputs.preprocess
    encoder = _mixed(inputs)
    router = inputs.router_encoder()
    zeros = torch.zeros(1, inputs.bank.size)
    drawn = inputs.images("train", tr["samples"], tr["seed"])
    if router is None:
        samples = [_embed(encoder, preprocess, zeros, images, batch) for images in drawn]
    else:
        samples = [extract_features(router, preprocess(images), batch) for images in drawn]
    validation = inputs.drawn("val", tr["val_samples"], tr["seed"])
    pixels = preprocess(torch.cat([images for images, _ in validation]))
    labels = torch.cat([labels for _, labels in validation])
    truth = torch.cat([torch.full((len(labels),), index) for index, (_, labels) in enumerate(validation)])
    heads = inputs.heads()
    policy = TrPolicy(encoder, samples, tr["temperatures"][0], tr["top_k"][0], tr["form"], tr["renormalize"], router)
    selection = choose_tr_routing(policy, heads, pixels, labels, truth, tr["temperatures"], tr["top_k"], batch)
    temperature, k = selection.chosen["all"]
    print("\n".join(describe(selection, "(temperature, top_k)")))
    tensors = {f"samples/{task}": rows for task, rows in zip(tasks, samples, strict=True)}
    grid_scores = [{"temperature": t, "top_k": kk, "val_accuracy": a} for (t, kk), a in selection.scores["all"].items()]
    return tensors, {"temperature": temperature, "top_k": k, "form": tr["form"], "renormalize": tr["renormalize"],
                     "router_encoder": tr["router_encoder"],
                     "samples": tr["samples"], "val_samples": tr["val_samples"], "grid": grid_scores}


def _calibrate_twin(twin: Mapping[str, Any], inputs: CalibrationInputs) -> Calibration:
    """The MLP router on the shared expert's features, its epoch chosen on (the whole) validation split."""
    preprocess, batch = inputs.preprocess, inputs.batch_size
    encoder = twin_encoder(inputs.encoder, inputs.bank, twin["shared_scale"], twin["density"], device=inputs.device,
                           autocast=inputs.autocast)
    zeros = torch.zeros(1, inputs.bank.size)
    train = [_embed(encoder, preprocess, zeros, x, batch) for x in inputs.images("train", twin["samples"], twin["seed"])]
    val = [_embed(encoder, preprocess, zeros, x, batch) for x in inputs.images("val", None, twin["seed"])]
    trained = train_twin_router(train, val, hidden=twin["hidden"], dropout=twin["dropout"], lr=twin["lr"], epochs=twin["epochs"],
                                batch_size=twin["batch_size"], seed=twin["seed"])
    print(f"twin router: epoch {trained.epoch + 1} of {twin['epochs']} chosen on validation "
          f"(routing accuracy {trained.val_accuracy[trained.epoch]:.4f}; last epoch {trained.val_accuracy[-1]:.4f})")
    settings = {"epoch": trained.epoch, "val_accuracy": trained.val_accuracy, **twin}
    return {f"router/{key}": value for key, value in trained.state.items()}, settings


def _calibrate_mad(mad: Mapping[str, Any], inputs: CalibrationInputs) -> Calibration:
    """Per-task Gaussians of the weight-averaged LoRA model's features."""
    encoder = _mixed(inputs)
    average = torch.full((1, inputs.bank.size), 1.0 / inputs.bank.size)
    features = [_embed(encoder, inputs.preprocess, average, x, inputs.batch_size) for x in inputs.images("train", mad["samples"], mad["seed"])]
    router = fit_router("mad", list(inputs.tasks), features, mad["eps"])
    return {f"router/{key}": value for key, value in router.state().items()}, dict(mad)


def _experts_policy(tensors: Mapping[str, Tensor], settings: Mapping[str, Any], inputs: ServingInputs) -> tuple[Policy, int]:
    return ExpertPolicy(_mixed(inputs)), 0


def _task_arithmetic_policy(tensors: Mapping[str, Tensor], settings: Mapping[str, Any], inputs: ServingInputs) -> tuple[Policy, int]:
    return ConstantPolicy(_mixed(inputs), settings["scale"]), 0


def _tr_policy(tensors: Mapping[str, Tensor], settings: Mapping[str, Any], inputs: ServingInputs) -> tuple[Policy, int]:
    encoder = _mixed(inputs)
    samples = [tensors[f"samples/{task}"] for task in inputs.tasks]
    router_model = inputs.router_encoder()
    held = tensor_bytes(samples) + (router_model.parameter_bytes() if router_model is not None else 0)
    return TrPolicy(encoder, samples, settings["temperature"], settings["top_k"], settings["form"], settings["renormalize"],
                    router_model), held


def _twin_policy(tensors: Mapping[str, Tensor], settings: Mapping[str, Any], inputs: ServingInputs) -> tuple[Policy, int]:
    router = _prefixed(tensors, "router/")
    encoder = twin_encoder(inputs.encoder, inputs.bank, settings["shared_scale"], settings["density"], device=inputs.device,
                           autocast=inputs.autocast)
    return TwinPolicy(encoder, load_twin_router(router)), tensor_bytes(router)


def _dawin_policy(tensors: Mapping[str, Tensor], settings: Mapping[str, Any], inputs: ServingInputs) -> tuple[Policy, int]:
    encoder = _mixed(inputs)
    policy: Policy = DawinPolicy(encoder, inputs.heads, settings["scale"], settings["head"])
    if settings["mode"] == "dataset_mean":
        # the authors' multi-task mode: mean coefficients over each dataset's test inputs, one merge per dataset
        policy = dataset_mean_policy(policy, inputs.preprocess(inputs.stream.images), inputs.stream.tasks, inputs.batch_size)
    return policy, 0


def _mad_policy(tensors: Mapping[str, Tensor], settings: Mapping[str, Any], inputs: ServingInputs) -> tuple[Policy, int]:
    encoder = _mixed(inputs)
    router = _prefixed(tensors, "router/")
    return MadPolicy(encoder, Router.from_state("mad", list(inputs.tasks), router)), tensor_bytes(router)


LORA_REGISTRY: dict[str, LoraMethod] = {
    method.name: method
    for method in (
        LoraMethod(lora_declaration("experts"), _settings_only(lambda settings: {}), _experts_policy, fits=False),
        LoraMethod(lora_declaration("task_arithmetic"), _settings_only(dict), _task_arithmetic_policy, fits=False),
        LoraMethod(lora_declaration("tr"), _fitted(_calibrate_tr), _tr_policy),
        LoraMethod(lora_declaration("twin"), _fitted(_calibrate_twin), _twin_policy, needs_grad=True),
        LoraMethod(lora_declaration("dawin"), _settings_only(dict), _dawin_policy, fits=False),
        LoraMethod(lora_declaration("mad"), _fitted(_calibrate_mad), _mad_policy),
    )
}
assert tuple(LORA_REGISTRY) == LORA_METHODS, "every declared LoRA method is bound, in declarations/lora.py's order, and only those"


def get_lora_method(name: str) -> LoraMethod:
    return LORA_REGISTRY[lora_declaration(name).name]
