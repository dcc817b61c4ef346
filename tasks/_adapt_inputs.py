"""What the adaptation stages read and build: base weights, task vectors, heads, the encoder as a function of a state
dict, and seeded unlabelled test batches (kept apart from other stage helpers so adaptation plumbing never
invalidates the merge or routing stages)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mergeflow.adaptation.batches import batch_sampler
from mergeflow.adaptation.loop import AdaptationResult, adapt
from mergeflow.adaptation.methods import build_adaptive
from mergeflow.adaptation.model import AdaptiveMerge
from mergeflow.models.head import Head, apply_head
from mergeflow.params import Params
from mergeflow.routing.served import InputTransform, SwappableEncoder
from mergeflow.runtime.device import CPU, autocast_context
from mergeflow.seeding import torch_generator
from tasks._artifacts import load_split_tensors
from tasks._merge_inputs import load_base_visual, load_task_vectors
from tasks._routing_inputs import load_encoder, load_heads


def unlabelled_pools(params: Params, preprocess: InputTransform, fraction: float, seed: int) -> list[torch.Tensor]:
    """Per task, preprocessed test inputs the batches are drawn from: the first ceil(fraction * n) of a seeded
    permutation (labels are never read: adaptation is unsupervised)."""
    pools = []
    for task in params.suite.tasks:
        images = load_split_tensors(task, "test")[1]
        order = torch.randperm(len(images), generator=torch_generator(seed, "adapt-pool", task))
        keep = max(1, math.ceil(fraction * len(images)))
        pools.append(preprocess(images[order[:keep]]))
    return pools


@torch.no_grad()
def validation_accuracy(encoder: SwappableEncoder, state: dict[str, torch.Tensor], inputs: list[tuple[torch.Tensor, torch.Tensor]],
                        heads: list[Head], device: torch.device = CPU, autocast: str = "none") -> float:
    """Mean over tasks of validation accuracy (preprocessed inputs, labels): a diagnostic logged during adaptation,
    never used to pick a step. The encoder and ``state`` are on ``device``; each task's inputs move there."""
    scores = []
    for (pixels, labels), head in zip(inputs, heads, strict=True):
        with autocast_context(autocast, device):
            logits = apply_head(head.to(device), encoder(state, pixels.to(device)))
        scores.append(float((logits.argmax(dim=-1).cpu() == labels).double().mean()))
    return sum(scores) / len(scores)


def run_adaptation(
    params: Params, method: str, *, learn: str | None = None, fraction: float | None = None, log_every: int | None = None,
    device: torch.device = CPU, autocast: str = "none",
) -> tuple[AdaptiveMerge, AdaptationResult, dict[int, float]]:
    """adapt@METHOD's run (or an analysis variant: another ``learn`` or test-data ``fraction``), seeded by adapt.seed.
    The decomposition is built on the CPU; the adaptation steps run on ``device`` under ``autocast``.

    With ``log_every``, the mean validation accuracy at step 0 and every ``log_every`` steps is returned too (a
    diagnostic of whether lower entropy means higher accuracy on this suite; the final step is what is reported)."""
    settings = params.adapt
    module, preprocess = load_encoder(params)
    encoder = SwappableEncoder(module.to(device))
    base, task_vectors = load_base_visual(), load_task_vectors(params.suite.tasks)
    heads = load_heads(params.suite.tasks)
    options = settings.settings(method)
    if method != "adamerging":
        options["learn"] = learn or settings.learn
    model = build_adaptive(method, base, task_vectors, **options).to(device)
    pools = unlabelled_pools(params, preprocess, settings.data_fraction if fraction is None else fraction, settings.seed)
    trajectory: dict[int, float] = {}
    on_step: Callable[[int, float], None] | None = None
    if log_every:
        validation = [(preprocess(images), labels) for images, labels in
                      (load_split_tensors(task, "val")[1:] for task in params.suite.tasks)]
        trajectory[0] = validation_accuracy(encoder, model.hard_state(), validation, heads, device, autocast)

        def log_validation(step: int, loss: float) -> None:
            if (step + 1) % log_every == 0 or step + 1 == settings.steps:
                trajectory[step + 1] = validation_accuracy(encoder, model.hard_state(), validation, heads, device, autocast)

        on_step = log_validation

    result = adapt(model, lambda state, pixels: encoder(state, pixels), heads,
                   batch_sampler(pools, settings.batch_size, settings.seed), settings.steps, settings.lr, on_step=on_step,
                   device=device, autocast=autocast)
    return model, result, trajectory
