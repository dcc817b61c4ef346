"""Task-unknown serving, end to end (MAD Algorithm 1): route a batch, run each routed group once, restore the order.

The server holds what the paper's memory figure counts: the pretrained weights, the routing feature extractor's
weights (the weight-averaged model), the mask bank with its masks still bit-packed, the router and the heads.
A task's encoder is rebuilt from the bank when a group needs it and dropped after the group: never T experts.
Weights are swapped with ``torch.func.functional_call``, so one encoder module serves every task. The servers run on
``device`` (the encoder, held weights and heads move there once, a task's rebuilt weights per group, each batch at
``predict``); routers stay where they were fitted (the CPU) and predictions come back on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mergeflow.errors import MergeflowError
from mergeflow.models.classifier import preprocess_images
from mergeflow.models.head import Head, apply_head, head_bytes
from mergeflow.routing.grouped import grouped_apply
from mergeflow.routing.routers import Router
from mergeflow.runtime.device import CPU, autocast_context, to_device


@dataclass(frozen=True)
class Prediction:
    """Per input: the task it was served as (routed, or given) and the class that task's head predicted."""

    tasks: torch.Tensor
    classes: torch.Tensor


@dataclass(frozen=True)
class Preprocess:
    """The encoder's input convention (``models.backbone.preprocess_config``)."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return preprocess_images(images, self.image_size, self.mean, self.std)


@dataclass(frozen=True)
class TokenIds:
    """Text encoders take the stored (N, L) token ids as they are: the text twin of ``Preprocess``."""

    def __call__(self, token_ids: torch.Tensor) -> torch.Tensor:
        return token_ids


# what turns stored inputs into the encoder's inputs: Preprocess, TokenIds, or any function (the public API's identity)
InputTransform = Callable[[torch.Tensor], torch.Tensor]


def tensor_bytes(tensors: Mapping[str, torch.Tensor] | Sequence[Head]) -> int:
    """Bytes of tensor data (what a weights dict or a list of heads costs in memory)."""
    values = tensors.values() if isinstance(tensors, Mapping) else tensors
    return sum(head_bytes(value) for value in values)


class SwappableEncoder:
    """One encoder module run with any weights dict (functional_call: no copy into the module's parameters)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval()

    def __call__(self, weights: Mapping[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, dict(weights), (pixels,))


def logits(features: torch.Tensor, head: Head) -> torch.Tensor:
    """As ``ImageClassifier``: the frozen head on the encoder's features (``models.head``)."""
    return apply_head(head, features)


def check_heads_and_router(heads: Sequence[Head], tasks: Sequence[str], router: Router | None) -> None:
    """One head per task, and a router calibrated for exactly these tasks: what every routed server needs first."""
    if len(heads) != len(tasks):
        raise MergeflowError(f"{len(heads)} heads for {len(tasks)} tasks: give one head per task, in task order")
    if router is not None and tuple(router.tasks) != tuple(tasks):
        raise MergeflowError(
            f"the router was calibrated for tasks {list(router.tasks)} but the mask bank holds {list(tasks)}: "
            "recalibrate the router on the same suite"
        )


class RoutedClassifier:
    """Route each input with ``router`` on the features of ``feature_weights``, then serve it with its task's model.

    ``task_weights(t)`` rebuilds task t's encoder weights (from a mask bank: theta_0 + r_t * (m_t ⊙ merged)).
    ``heads[t]`` is task t's frozen head. A mis-routed input is classified by the wrong task's model and head; the
    caller counts it wrong, whatever class index comes out.
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_weights: Mapping[str, torch.Tensor],
        task_weights: Callable[[int], Mapping[str, torch.Tensor]],
        heads: Sequence[Head],
        tasks: Sequence[str],
        router: Router | None,
        preprocess: InputTransform,
        *,
        normalize_features: bool = False,
        device: torch.device = CPU,
        autocast: str = "none",
    ) -> None:
        check_heads_and_router(heads, tasks, router)
        self.encoder = SwappableEncoder(encoder.to(device))
        self.feature_weights = to_device(feature_weights, device)
        self.task_weights = task_weights
        self.heads = [head.to(device) for head in heads]
        self.tasks = list(tasks)
        self.router = router
        self.preprocess = preprocess
        self.normalize_features = normalize_features
        self.device, self.autocast = device, autocast

    @torch.no_grad()
    def route(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B,) predicted task indices for preprocessed inputs (on the router's device, the CPU for fitted routers)."""
        if self.router is None:
            raise MergeflowError("this server has no router: pass an assignment (oracle routing) to predict")
        with autocast_context(self.autocast, self.device):
            features = self.encoder(self.feature_weights, pixels)
        if self.normalize_features:
            features = F.normalize(features, dim=-1)
        return self.router.route(features)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, assignment: torch.Tensor | None = None) -> Prediction:
        """Serve a batch of uint8 images; ``assignment`` (true task indices) replaces the router: oracle routing."""
        pixels = self.preprocess(images.to(self.device))
        tasks = self.route(pixels) if assignment is None else assignment.to(torch.int64)

        def run_group(task: int, group: torch.Tensor) -> torch.Tensor:
            weights = to_device(self.task_weights(task), self.device)
            with autocast_context(self.autocast, self.device):
                return logits(self.encoder(weights, group), self.heads[task]).argmax(dim=-1)

        return Prediction(tasks.cpu(), grouped_apply(pixels, tasks, run_group).cpu())


class StaticClassifier:
    """The task-unknown baseline: one merged model for every input, each input scored with its own task's head
    (the convention of merging benchmarks' static rows); the encoder runs once per batch."""

    def __init__(self, encoder: nn.Module, weights: Mapping[str, torch.Tensor], heads: Sequence[Head], preprocess: InputTransform,
                 *, device: torch.device = CPU, autocast: str = "none") -> None:
        self.encoder = SwappableEncoder(encoder.to(device))
        self.weights = to_device(weights, device)
        self.heads = [head.to(device) for head in heads]
        self.preprocess = preprocess
        self.device, self.autocast = device, autocast

    @torch.no_grad()
    def predict(self, images: torch.Tensor, tasks: torch.Tensor) -> Prediction:
        with autocast_context(self.autocast, self.device):
            features = self.encoder(self.weights, self.preprocess(images.to(self.device)))
            classes = grouped_apply(features, tasks, lambda task, group: logits(group, self.heads[task]).argmax(dim=-1))
        return Prediction(tasks.to(torch.int64), classes.cpu())
