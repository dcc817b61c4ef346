"""Entropy minimisation of a per-input model's learnable parts on unlabelled test batches (WEMoE's router training).

The loss is the adaptation stages' (``adaptation.loop.entropy_loss``: every task's batch through the model, the
tasks' mean entropies summed); the final step is what is kept, as there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from mergeflow.adaptation.loop import entropy_loss
from mergeflow.errors import MergeflowError
from mergeflow.models.head import Head, frozen_head
from mergeflow.runtime.device import CPU, autocast_context, backward_and_step, grad_scaler

Batches = Callable[[int, int], torch.Tensor]  # (step, task index) -> that task's unlabelled batch


@dataclass(frozen=True)
class TrainingLog:
    """Per-step loss and wall seconds (kept out of cached artifacts: the seconds vary run to run)."""

    losses: list[float]
    seconds: list[float]


def minimise_entropy(model: Callable[[torch.Tensor], torch.Tensor], parameters: Sequence[torch.nn.Parameter],
                     heads: Sequence[Head], batches: Batches, steps: int, lr: float, desc: str, *,
                     device: torch.device = CPU, autocast: str = "none") -> TrainingLog:
    """``steps`` Adam(lr) steps on ``parameters``: one batch per task and step, loss = summed mean entropies.

    ``model`` must already be on ``device``; the heads move there and each step's batches are moved at the loop; the
    forward pass runs under ``autocast`` (fp16 adds a gradient scaler)."""
    if not parameters:
        raise MergeflowError("nothing to learn: the model has no trainable parameters")
    if lr <= 0 or steps < 0:
        raise MergeflowError(f"need lr > 0 and steps >= 0, got lr {lr!r}, steps {steps!r}")
    optimizer = torch.optim.Adam(parameters, lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    frozen = [frozen_head(head, device) for head in heads]
    scaler = grad_scaler(autocast, device)
    losses: list[float] = []
    seconds: list[float] = []
    for step in tqdm(range(steps), desc=desc, unit="step", leave=False):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        inputs = [batches(step, task).to(device) for task in range(len(frozen))]
        with autocast_context(autocast, device):
            loss = entropy_loss({}, lambda _, x: model(x), frozen, inputs)
        backward_and_step(loss, optimizer, scaler)
        value = loss.item()
        seconds.append(time.perf_counter() - start)
        if not math.isfinite(value):
            raise MergeflowError(f"the entropy became {value} at step {step}; lower lr or check the inputs")
        losses.append(value)
    return TrainingLog(losses, seconds)
