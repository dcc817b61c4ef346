"""The calibration half of stage serve_lora@METHOD: everything its serving half (evaluate_lora.py) needs to serve
METHOD over the LoRA experts.

tr: M router-encoder embeddings per task (the base encoder's, or lora.tr.router_encoder's), then temperature and
top-K chosen on validation; twin: the MLP router on the shared expert's features, its epoch chosen on validation;
mad: per-task Gaussians of the weight-averaged LoRA model's features; experts, task_arithmetic, dawin: their
settings only (they fit nothing). Test data is never read here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch

from mergeflow.errors import MergeflowError
from mergeflow.lora.bank import FactorBank
from mergeflow.lora.mixed_encoder import MixedEncoder
from mergeflow.lora.policies import TrPolicy, head_logits
from mergeflow.lora.twin import train_twin_router, twin_encoder
from mergeflow.params import Params
from mergeflow.routing.calibration import calibration_rows
from mergeflow.routing.features import extract_features
from mergeflow.routing.routers import fit_router
from mergeflow.routing.served import InputTransform
from mergeflow.selection import describe, select_per_task
from tasks._artifacts import load_split_tensors
from tasks._lora_inputs import load_lora_bank, load_tr_router, save_policy
from tasks._routing_inputs import load_encoder, load_heads
from tasks._stage import run_stage


def _drawn(tasks: list[str], split: str, samples: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) of ``samples`` seeded inputs per task of ``split`` (all of them when the split is smaller)."""
    drawn = []
    for task in tasks:
        _, images, labels = load_split_tensors(task, split)
        rows = calibration_rows(len(images), task, min(samples, len(images)), seed)
        drawn.append((images[rows], labels[rows]))
    return drawn


def _drawn_images(tasks: list[str], split: str, samples: int, seed: int) -> list[torch.Tensor]:
    return [images for images, _ in _drawn(tasks, split, samples, seed)]


def _embed(encoder: MixedEncoder, preprocess: InputTransform, coefficients: torch.Tensor, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Features of ``images`` through the encoder with one coefficient row for every input."""
    return extract_features(lambda batch: encoder(preprocess(batch), coefficients.expand(len(batch), -1)), images, batch_size)


def _calibrate_tr(params: Params, bank: FactorBank, module: torch.nn.Module, preprocess: InputTransform) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tr, tasks, batch = params.lora.tr, params.suite.tasks, params.lora.batch_size
    encoder = MixedEncoder(module, bank)
    router = load_tr_router(params)
    zeros = torch.zeros(1, bank.size)
    drawn = _drawn_images(tasks, "train", tr.samples, tr.seed)
    if router is None:
        samples = [_embed(encoder, preprocess, zeros, images, batch) for images in drawn]
    else:
        samples = [extract_features(router, preprocess(images), batch) for images in drawn]
    validation = _drawn(tasks, "val", tr.val_samples, tr.seed)
    pixels = preprocess(torch.cat([images for images, _ in validation]))
    labels = torch.cat([labels for _, labels in validation])
    truth = torch.cat([torch.full((len(labels),), index) for index, (_, labels) in enumerate(validation)])
    heads = load_heads(tasks)
    policy = TrPolicy(encoder, samples, tr.temperatures[0], tr.top_k[0], tr.form, tr.renormalize, router)
    scores = torch.cat([policy.scores(pixels[i : i + batch]) for i in range(0, len(pixels), batch)])

    def accuracy(_: str, choice: tuple[float, int]) -> float:
        policy.temperature, policy.k = choice
        right = 0
        for first in range(0, len(pixels), batch):
            rows = slice(first, first + batch)
            weights = policy.weights(scores[rows])
            features = encoder(pixels[rows], weights)
            right += int((head_logits(features, heads, truth[rows]) == labels[rows]).sum())
        return right / len(pixels)

    grid = [(t, k) for k in tr.top_k for t in tr.temperatures]
    selection = select_per_task(["all"], grid, accuracy)
    temperature, k = selection.chosen["all"]
    print("\n".join(describe(selection, "(temperature, top_k)")))
    tensors = {f"samples/{task}": rows for task, rows in zip(tasks, samples, strict=True)}
    grid_scores = [{"temperature": t, "top_k": kk, "val_accuracy": a} for (t, kk), a in selection.scores["all"].items()]
    return tensors, {"temperature": temperature, "top_k": k, "form": tr.form, "renormalize": tr.renormalize,
                     "router_encoder": tr.router_encoder,
                     "samples": tr.samples, "val_samples": tr.val_samples, "grid": grid_scores}


def _calibrate_twin(params: Params, bank: FactorBank, module: torch.nn.Module, preprocess: InputTransform) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    twin, tasks, batch = params.lora.twin, params.suite.tasks, params.lora.batch_size
    encoder = twin_encoder(module, bank, twin.shared_scale, twin.density)
    zeros = torch.zeros(1, bank.size)
    train = [_embed(encoder, preprocess, zeros, x, batch) for x in _drawn_images(tasks, "train", twin.samples, twin.seed)]
    val = [_embed(encoder, preprocess, zeros, load_split_tensors(task, "val")[1], batch) for task in tasks]
    trained = train_twin_router(train, val, hidden=twin.hidden, dropout=twin.dropout, lr=twin.lr, epochs=twin.epochs,
                                batch_size=twin.batch_size, seed=twin.seed)
    print(f"twin router: epoch {trained.epoch + 1} of {twin.epochs} chosen on validation "
          f"(routing accuracy {trained.val_accuracy[trained.epoch]:.4f}; last epoch {trained.val_accuracy[-1]:.4f})")
    settings = {"epoch": trained.epoch, "val_accuracy": trained.val_accuracy, **twin.model_dump()}
    return {f"router/{key}": value for key, value in trained.state.items()}, settings


def _calibrate_mad(params: Params, bank: FactorBank, module: torch.nn.Module, preprocess: InputTransform) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    mad, tasks = params.lora.mad, params.suite.tasks
    encoder = MixedEncoder(module, bank)
    average = torch.full((1, bank.size), 1.0 / bank.size)
    features = [_embed(encoder, preprocess, average, x, params.lora.batch_size) for x in _drawn_images(tasks, "train", mad.samples, mad.seed)]
    router = fit_router("mad", tasks, features, mad.eps)
    return {f"router/{key}": value for key, value in router.state().items()}, mad.model_dump()


def _settings_only(block: Callable[[Params], Any]) -> Callable[..., tuple[dict[str, torch.Tensor], dict[str, Any]]]:
    return lambda params, *_: ({}, block(params))


SETTINGS_ONLY = ("experts", "task_arithmetic", "dawin")  # fit nothing: they never load the experts or the encoder
CALIBRATORS: dict[str, Callable[..., tuple[dict[str, torch.Tensor], dict[str, Any]]]] = {
    "experts": _settings_only(lambda params: {}),
    "task_arithmetic": _settings_only(lambda params: params.lora.task_arithmetic.model_dump()),
    "dawin": _settings_only(lambda params: params.lora.dawin.model_dump()),
    "tr": _calibrate_tr,
    "twin": _calibrate_twin,
    "mad": _calibrate_mad,
}


def build(args: argparse.Namespace, params: Params) -> None:
    method = args.item
    if method not in params.lora.methods:
        raise MergeflowError(f"{method!r} is not in lora.methods ({', '.join(params.lora.methods)})")
    if method in SETTINGS_ONLY:  # the same file as before, without building 8 adapted CLIPs (and importing open_clip)
        save_policy(method, *CALIBRATORS[method](params))
        return
    bank = load_lora_bank(params)
    module, preprocess = load_encoder(params)
    torch.manual_seed(0)
    with torch.no_grad() if method != "twin" else torch.enable_grad():
        tensors, settings = CALIBRATORS[method](params, bank, module, preprocess)
    save_policy(method, tensors, settings)


if __name__ == "__main__":
    run_stage("calibrate_lora", "Fit what one LoRA-expert method needs to serve (router, temperature and top-K on validation).",
              build, item_help="method name from lora.methods")
