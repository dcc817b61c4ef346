"""The test-time adaptation loop: Adam on the summed prediction entropy of every task's unlabelled batches.

As AdaMerging and AdaRank do, each step rebuilds the merged state dict, takes one batch per task, sums (not
averages) the tasks' mean entropies and takes one optimiser step. We report the *final* step's hard-masked
model: AdaRank's runner keeps the best test accuracy over evaluations, which is selection on test.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from mergeflow.adaptation.entropy import mean_entropy
from mergeflow.adaptation.model import AdaptiveMerge
from mergeflow.declarations.common import check_non_negative_int, check_number
from mergeflow.errors import MergeflowError
from mergeflow.models.head import Head, apply_head, frozen_head
from mergeflow.runtime.device import CPU, autocast_context, backward_and_step, grad_scaler, to_cpu

Tensor = torch.Tensor
# (merged state dict, input batch) -> unnormalised features, e.g. torch.func.functional_call(encoder, state, (x,))
Forward = Callable[[dict[str, Tensor], Tensor], Tensor]
# (step, task index) -> that task's unlabelled input batch for that step; the caller seeds it
Batches = Callable[[int, int], Tensor]


@dataclass(frozen=True)
class AdaptationResult:
    """The final hard-masked state dict (base dtypes), per-step loss and wall seconds, and the final masks/lam."""

    state: dict[str, Tensor]
    losses: list[float]
    seconds: list[float]
    kept_ranks: dict[str, dict[str, int]]
    coefficients: Tensor


def entropy_loss(state: dict[str, Tensor], forward: Forward, heads: Sequence[Head], inputs: Sequence[Tensor]) -> Tensor:
    """sum_t mean_entropy(normalise(f_state(x_t)) @ head_t^T): the logits of ``models.classifier.ImageClassifier``.

    Every task's batch goes through the one merged model, so they run as one concatenated forward (the encoder
    treats inputs independently: no batch statistics), which costs a fraction of T small forwards on a CPU."""
    if len(heads) != len(inputs):
        raise MergeflowError(f"got {len(inputs)} input batches for {len(heads)} heads; pass one batch per task")
    per_task = forward(state, torch.cat(list(inputs))).split([len(batch) for batch in inputs])
    return torch.stack([mean_entropy(apply_head(head, task_features))
                        for head, task_features in zip(heads, per_task, strict=True)]).sum()


def adapt(
    model: AdaptiveMerge,
    forward: Forward,
    heads: Sequence[Head],
    batches: Batches,
    steps: int,
    lr: float = 1e-3,
    *,
    on_step: Callable[[int, float], None] | None = None,
    device: torch.device = CPU,
    autocast: str = "none",
) -> AdaptationResult:
    """Run ``steps`` Adam(lr, betas (0.9, 0.999), no weight decay) steps on ``model``'s learnable parameters;
    ``heads[t]`` (classes, dim) is task t's frozen head; ``on_step(step, loss)`` is called after each step.

    ``model`` and the heads move to ``device`` (``forward``'s encoder must be there too) and each step's batches
    are moved at the loop (drawn wherever ``batches`` keeps them); the forward pass and loss run under ``autocast``
    (fp16 adds a gradient scaler). The result's tensors are on the CPU; ``model`` is left on ``device``."""
    steps = check_non_negative_int("steps", steps)
    lr = check_number("lr", lr)
    if lr <= 0:
        raise MergeflowError(f"lr must be > 0, got {lr!r}")
    if len(heads) != model.num_tasks:
        raise MergeflowError(
            f"got {len(heads)} heads for {model.num_tasks} tasks ({', '.join(model.tasks)}); pass one per task, in task order"
        )
    model.to(device)
    parameters = model.parameters_to_learn()
    if not parameters:
        raise MergeflowError("nothing to learn: set learn_lambda or learn_masks (masks need a decomposition with SVD keys)")
    frozen_heads = [frozen_head(head, device) for head in heads]
    optimizer = torch.optim.Adam(parameters, lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    scaler = grad_scaler(autocast, device)
    losses: list[float] = []
    seconds: list[float] = []
    for step in tqdm(range(steps), desc="adapt", unit="step", leave=False):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        inputs = [batches(step, task).to(device) for task in range(model.num_tasks)]
        with autocast_context(autocast, device):
            loss = entropy_loss(model.merged_state(), forward, frozen_heads, inputs)
        backward_and_step(loss, optimizer, scaler)
        value = loss.item()  # also waits for an accelerator, so the time below is the step's
        seconds.append(time.perf_counter() - start)
        if not math.isfinite(value):
            raise MergeflowError(f"the adaptation loss became {value} at step {step}; lower lr or check the inputs")
        losses.append(value)
        if on_step is not None:
            on_step(step, value)
    return AdaptationResult(
        state=to_cpu(model.hard_state()), losses=losses, seconds=seconds, kept_ranks=model.kept_ranks(),
        coefficients=model.effective_coefficients().detach().clone().cpu(),
    )
