"""Routed serving that shares its trunk: one pass per input instead of MAD's two (issue 17, item 4).

The paper's design (:class:`~mergeflow.routing.served.RoutedClassifier`) runs every input through the whole routing
model, routes on its output, then through the whole routed task model. Here the tower is cut at block L:

- shared, once per input, with the routing model's weights: the stem and blocks < L (the stem goes with block 0);
- routing features: the hidden states after block L through the routing model's own final norm, pooling and
  projection — pooled exactly as the final features are, so L = all blocks routes on the paper's features, and every
  L keeps the same feature width (and the same N < D covariance regime);
- per routed group, with the task's bank-rebuilt weights: blocks >= L and the final norm/pooling/projection,
  continuing from the shared hidden states; only those keys are rebuilt from the bank.

The ends: L = 0 shares nothing (the task model runs from the pixels, its own stem included; the routing pass is
only the routing model's stem) — the paper's serving with a router on embedding-level features. L = all shares the
whole tower, final norm and projection included (they go with the last block): the served features are the routing
features, i.e. the routing model itself with the task's head, and nothing is rebuilt from the bank.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import torch
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.models.head import Head
from mergeflow.models.vit_split import SplitTower, check_split, keys_after
from mergeflow.routing.calibration import prepare_features
from mergeflow.routing.grouped import grouped_apply
from mergeflow.routing.routers import Router
from mergeflow.routing.served import InputTransform, Prediction, check_heads_and_router, logits
from mergeflow.runtime.device import CPU, autocast_context, to_device

# task t's weights for the keys a continuation reads (theta_0 + r_t * (m_t ⊙ merged), those keys only)
TaskWeights = Callable[[int, Collection[str]], Mapping[str, torch.Tensor]]


class SharedTrunkClassifier:
    """Route on the routing model's features after block ``split``, serve each group from there with its task's blocks."""

    def __init__(
        self,
        tower: nn.Module,
        feature_weights: Mapping[str, torch.Tensor],
        task_weights: TaskWeights,
        heads: Sequence[Head],
        tasks: Sequence[str],
        router: Router | None,
        preprocess: InputTransform,
        split: int,
        *,
        normalize_features: bool = False,
        device: torch.device = CPU,
        autocast: str = "none",
    ) -> None:
        check_heads_and_router(heads, tasks, router)
        self.split = check_split(tower, split)
        self.tower = SplitTower(tower.to(device))
        self.feature_weights = to_device(feature_weights, device)
        self.continuation_keys = frozenset(keys_after(feature_weights, split))
        self.task_weights = task_weights
        self.heads = [head.to(device) for head in heads]
        self.tasks, self.router, self.preprocess = list(tasks), router, preprocess
        self.normalize_features = normalize_features
        self.device, self.autocast = device, autocast

    def trunk(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states after block ``split``, routing features there) with the routing model's weights."""
        hidden = self.tower.blocks_between(self.feature_weights, self.tower.stem(self.feature_weights, pixels), 0, self.split)
        return hidden, self.tower.pooled(self.feature_weights, hidden)

    def continue_task(self, task: int, hidden: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """(B, D) task ``task``'s features, continuing from the shared ``hidden`` (from ``pixels`` at split 0)."""
        weights = to_device(self.task_weights(task, self.continuation_keys), self.device)
        start = self.tower.stem(weights, pixels) if self.split == 0 else hidden
        return self.tower.pooled(weights, self.tower.blocks_between(weights, start, self.split, self.tower.blocks))

    @torch.no_grad()
    def predict(self, images: torch.Tensor, assignment: torch.Tensor | None = None) -> Prediction:
        """Serve a batch of uint8 images; ``assignment`` (true task indices) replaces the router: oracle routing."""
        pixels = self.preprocess(images.to(self.device))
        with autocast_context(self.autocast, self.device):
            hidden, features = self.trunk(pixels)
        if assignment is not None:
            tasks = assignment.to(torch.int64)
        elif self.router is None:
            raise MergeflowError("this server has no router: pass an assignment (oracle routing) to predict")
        else:
            tasks = self.router.route(prepare_features(features.float(), self.normalize_features))
        rows = torch.arange(pixels.shape[0], device=self.device)

        def run_group(task: int, group: torch.Tensor) -> torch.Tensor:
            with autocast_context(self.autocast, self.device):
                served = features[group] if self.split == self.tower.blocks else self.continue_task(task, hidden[group], pixels[group])
                return logits(served, self.heads[task]).argmax(dim=-1)

        return Prediction(tasks.cpu(), grouped_apply(rows, tasks, run_group).cpu())
