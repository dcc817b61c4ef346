"""Who gets which experts: the per-input coefficient rules of the LoRA-expert methods, served by one ``MixedEncoder``.

Every method here is (an encoder over a factor bank, a rule mapping a batch to (B, E) coefficients). Inputs are scored
with their dataset's frozen head, the convention of every merging paper's tables and of our static baselines; what a
method decides without the task label is the weights, and its routing accuracy (argmax coefficient = true task) is
reported beside the accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F

from mergeflow.errors import MergeflowError
from mergeflow.lora.dawin import dataset_mean, dawin_coefficients, prediction_entropy
from mergeflow.lora.mixed_encoder import MixedEncoder
from mergeflow.lora.tr_router import mean_cosine_scores, routing_weights, top_k
from mergeflow.lora.twin import TwinRouter
from mergeflow.models.head import Head, apply_head
from mergeflow.routing.grouped import grouped_apply
from mergeflow.routing.routers import Router


def _reduce(logits: torch.Tensor, reduce: str) -> torch.Tensor:
    if reduce == "argmax":
        return logits.argmax(dim=-1)
    entropy = prediction_entropy(logits)
    return entropy / math.log(logits.shape[-1]) if reduce == "normalized_entropy" else entropy


def head_logits(features: torch.Tensor, heads: Sequence[Head], head_index: torch.Tensor, reduce: str = "argmax") -> torch.Tensor:
    """Per input: normalised features times head ``heads[head_index[b]]``, reduced to the argmax class ("argmax"),
    the prediction entropy ("entropy") or the entropy over log(classes) ("normalized_entropy")."""
    return grouped_apply(features, head_index, lambda index, rows: _reduce(apply_head(heads[index], rows), reduce))


class Policy(Protocol):
    """A method's rule: coefficients for a batch of preprocessed inputs (``tasks`` only where the method is allowed it)."""

    encoder: MixedEncoder

    def coefficients(self, pixels: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor: ...


@dataclass
class ExpertPolicy:
    """Task-known: each input served by its own task's expert (the LoRA fine-tuned row of the table)."""

    encoder: MixedEncoder

    def coefficients(self, pixels: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        return F.one_hot(tasks, self.encoder.experts).float()


@dataclass
class ConstantPolicy:
    """One static merge for every input: Task Arithmetic is ``scale`` on every expert."""

    encoder: MixedEncoder
    scale: float

    def coefficients(self, pixels: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        return torch.full((pixels.shape[0], self.encoder.experts), self.scale)


@dataclass
class TrPolicy:
    """TR-Merging: mean cosine to each task's M sample embeddings, temperature, top-K. The embeddings are the
    ``router``'s (a separate sentence embedder, as the paper's BGE-small) or, without one, the base model's features."""

    encoder: MixedEncoder
    task_samples: list[torch.Tensor]
    temperature: float
    k: int
    form: str = "written"
    renormalize: bool = False
    router: Callable[[torch.Tensor], torch.Tensor] | None = None

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """What the router compares: the router encoder's embedding, or the base model's (no expert mixed in)."""
        if self.router is not None:
            return self.router(pixels)
        return self.encoder(pixels, torch.zeros(pixels.shape[0], self.encoder.experts))

    def scores(self, pixels: torch.Tensor) -> torch.Tensor:
        return mean_cosine_scores(self.embed(pixels), self.task_samples)

    def weights(self, scores: torch.Tensor) -> torch.Tensor:
        return top_k(routing_weights(scores, self.temperature, self.form), self.k, renormalize=self.renormalize).float()

    def coefficients(self, pixels: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        return self.weights(self.scores(pixels))


@dataclass
class TwinPolicy:
    """Twin-Merging: softmax of the MLP router on the shared expert's features (the encoder's base is theta*)."""

    encoder: MixedEncoder
    router: TwinRouter

    def coefficients(self, pixels: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        features = self.encoder(pixels, torch.zeros(pixels.shape[0], self.encoder.experts))
        return self.router(features).softmax(dim=-1)


@dataclass
class DawinPolicy:
    """DaWin: one forward pass per expert, coefficients scale * T * softmax(-entropy).

    ``head="dataset"`` measures every expert's entropy with the input's dataset head (the authors' code: a task-ID
    assumption); ``head="expert"`` uses each expert's own head with the entropy divided by log(classes), which needs
    no task label.
    """

    encoder: MixedEncoder
    heads: list[Head]
    scale: float = 0.3
    head: Literal["dataset", "expert"] = "dataset"

    def coefficients(self, pixels: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        experts = self.encoder.experts
        entropies = []
        for expert in range(experts):
            one_hot = torch.zeros(pixels.shape[0], experts)
            one_hot[:, expert] = 1.0
            features = self.encoder(pixels, one_hot)
            if self.head == "dataset":
                entropies.append(head_logits(features, self.heads, tasks, reduce="entropy"))
            else:
                entropies.append(head_logits(features, self.heads, torch.full_like(tasks, expert), reduce="normalized_entropy"))
        return dawin_coefficients(torch.stack(entropies, dim=1), self.scale).float()


@dataclass
class MadPolicy:
    """MAD over LoRA experts: Mahalanobis routing on the weight-averaged model's features, then the routed expert."""

    encoder: MixedEncoder
    router: Router

    def coefficients(self, pixels: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        experts = self.encoder.experts
        features = self.encoder(pixels, torch.full((pixels.shape[0], experts), 1.0 / experts))
        return F.one_hot(self.router.route(features), experts).float()


@dataclass
class GroupMeanPolicy:
    """Fixed coefficients per true task (DaWin's dataset mode: one merge per dataset, a task-ID assumption)."""

    encoder: MixedEncoder
    by_task: torch.Tensor  # (tasks, E)

    def coefficients(self, pixels: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        return self.by_task[tasks]


@torch.no_grad()
def dataset_mean_policy(policy: Policy, pixels: torch.Tensor, tasks: torch.Tensor, batch_size: int) -> GroupMeanPolicy:
    """Run ``policy`` over a whole labelled set once and keep each task's mean coefficient row."""
    rows = torch.cat([policy.coefficients(pixels[i : i + batch_size], tasks[i : i + batch_size]) for i in range(0, len(pixels), batch_size)])
    groups = int(tasks.max()) + 1
    means = dataset_mean(rows, tasks)
    by_task = torch.zeros(groups, rows.shape[1])
    by_task[tasks] = means.float()
    return GroupMeanPolicy(policy.encoder, by_task)


@torch.no_grad()
def serve(policy: Policy, heads: Sequence[Head], pixels: torch.Tensor, tasks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted classes, coefficient rows) for one batch: coefficients by the policy, then one mixed forward pass."""
    if len(heads) != policy.encoder.experts:
        raise MergeflowError(f"{len(heads)} heads for {policy.encoder.experts} experts: give one head per task, in task order")
    coefficients = policy.coefficients(pixels, tasks)
    features = policy.encoder(pixels, coefficients)
    return head_logits(features, heads, tasks), coefficients
