"""A linear probe: a task head trained on a frozen encoder's features, for a sequence classifier's task that brings
no head of its own. The body is then fine-tuned against it frozen, as the vision experts against their zero-shot
heads; features are computed once (the encoder is frozen), so the probe costs one forward pass over the train split."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.runtime.device import CPU
from mergeflow.training.loop import OptimConfig, run_training


def train_probe(head: nn.Module, features: torch.Tensor, labels: torch.Tensor, config: OptimConfig,
                description: str = "probe", *, device: torch.device = CPU, autocast: str = "none") -> list[float]:
    """Train ``head`` in place on (N, D) ``features`` with cross-entropy; returns the loss per step (left in eval mode)."""
    if len(features) != len(labels) or len(features) == 0:
        raise MergeflowError(f"{description}: {len(features)} feature rows for {len(labels)} labels; need as many, at least one")
    head.to(device).train().requires_grad_(True)
    on_device, targets = features.detach().to(device), labels.to(device)
    losses = run_training(head.parameters(), lambda batch: F.cross_entropy(head(on_device[batch]), targets[batch]),
                          len(features), config, description, device=device, autocast=autocast)
    head.eval().requires_grad_(False)
    return losses
