"""mergeflow's public Python API: each method is one call on a user's own state dicts and tensors, no pipeline needed.

Exported from ``mergeflow`` itself (``import mergeflow as mf``): checkpoints in and out, task-vector algebra, every
static merge (in memory or streamed from files), routers fitted on features and task labels, routed group-batch
serving over a mask bank, test-time adaptation (AdaMerging, AdaRank) and per-input LoRA mixing. The pipeline's
stages call the same functions underneath, so a result here is the pipeline's result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from mergeflow.adaptation.loop import AdaptationResult, Batches
from mergeflow.adaptation.loop import adapt as _adapt_loop
from mergeflow.adaptation.methods import build_adaptive
from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank, reconstruct
from mergeflow.merging.common import StateDict, add_to_base
from mergeflow.merging.plan import as_bank, as_delta
from mergeflow.merging.registry import get_method, run_method
from mergeflow.models.head import Head
from mergeflow.routing.router_file import load_router as _load_router_file
from mergeflow.routing.router_file import save_router as _save_router_file
from mergeflow.routing.routers import Router, fit_router
from mergeflow.routing.served import Prediction, RoutedClassifier
from mergeflow.statedict.io import read_safetensors, save_tensors
from mergeflow.statedict.task_vector_algebra import TaskVector

Experts = Mapping[str, Mapping[str, torch.Tensor]]


def load_checkpoint(path: str | os.PathLike[str]) -> StateDict:
    """Every tensor of a safetensors checkpoint, validated (readable, no NaN/Inf); never unpickles."""
    return read_safetensors(path)[0]


def save_checkpoint(state: Mapping[str, torch.Tensor], path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None) -> None:
    """Write ``state`` as safetensors atomically (a temp file, then a rename), after a NaN/Inf check."""
    save_tensors(path, dict(state), dict(metadata) if metadata is not None else None)


def task_vectors(base: Mapping[str, torch.Tensor], experts: Experts) -> dict[str, TaskVector]:
    """{name: expert - base} for every expert, each checked against the base's keys, shapes and dtypes."""
    if not isinstance(experts, Mapping) or not experts:
        raise MergeflowError("experts must be a non-empty {task name: state dict} mapping")
    return {name: TaskVector.between(base, expert, name) for name, expert in experts.items()}


def _raw(base: Mapping[str, torch.Tensor], experts: Experts) -> dict[str, Mapping[str, torch.Tensor]]:
    return {name: vector.tensors for name, vector in task_vectors(base, experts).items()}


def merge(method: str, base: Mapping[str, torch.Tensor], experts: Experts, **hyperparameters: object) -> StateDict:
    """The merged model theta_0 + delta of a single-model method (``mergeflow.method_names()``; e.g. ``ties``, k=0.2).

    Unset hyperparameters take the method's declared defaults; a mask-bank method (``tall_ta``, ``tall_ties``,
    ``emr``) is refused here: use :func:`merge_bank`."""
    if get_method(method).returns == "bank":
        raise MergeflowError(f"{method} returns one mask per task, not one model: call merge_bank({method!r}, ...)")
    return add_to_base(base, as_delta(run_method(method, _raw(base, experts), hyperparameters)))


def merge_bank(method: str, base: Mapping[str, torch.Tensor], experts: Experts, **hyperparameters: object) -> MaskBank:
    """The mask bank (one shared vector, a mask and a rescaler per task) of ``tall_ta``, ``tall_ties`` or ``emr``;
    :func:`reconstruct` gives task t's model from it."""
    if get_method(method).returns != "bank":
        raise MergeflowError(f"{method} returns one model, not a mask bank: call merge({method!r}, ...)")
    return as_bank(run_method(method, _raw(base, experts), hyperparameters))


def fit_task_router(name: str, features: Mapping[str, torch.Tensor], eps: float = 1e-4) -> Router:
    """Fit router ``name`` (mad, pooled, diagonal, euclidean, cosine, knnK) on {task: (N_t, D) features}; its
    ``route(x)`` gives task indices into ``router.tasks`` (the mapping's order)."""
    if not isinstance(features, Mapping) or not features:
        raise MergeflowError("features must be a non-empty {task name: (N, D) tensor} mapping")
    return fit_router(name, list(features), list(features.values()), eps)


def save_router(router: Router, path: str | os.PathLike[str], info: Mapping[str, object] | None = None) -> None:
    """Write a router file (safetensors; name, tasks and ``info`` in its metadata), atomically."""
    _save_router_file(path, router, dict(info or {}))


def load_router(path: str | os.PathLike[str]) -> Router:
    """A router written by :func:`save_router`, the CLI's ``route fit`` or the pipeline's ``calibrate`` stage."""
    return _load_router_file(path)[0]


def serve_routed(
    encoder: nn.Module,
    base: Mapping[str, torch.Tensor],
    bank: MaskBank,
    router: Router,
    heads: Mapping[str, torch.Tensor],
    inputs: torch.Tensor,
    *,
    feature_weights: Mapping[str, torch.Tensor],
) -> Prediction:
    """MAD's group-batch inference: route ``inputs`` on the features of ``feature_weights`` (the paper's: the
    weight-averaged model), then run each routed group once through its task's model rebuilt from ``bank``.

    ``encoder`` is any module that maps inputs to (B, D) embeddings (its own weights are replaced); ``heads[t]`` is
    task t's (classes, D) head, logits = normalise(embedding) @ head^T. Returns the routed task and class per input."""
    tasks = list(router.tasks)
    missing = [task for task in tasks if task not in heads or task not in bank.masks]
    if missing:
        raise MergeflowError(f"the router knows tasks {missing} that the heads or the mask bank lack: fit it on the bank's tasks")
    server = RoutedClassifier(encoder, feature_weights, lambda index: reconstruct(base, bank, tasks[index]),
                              [heads[task] for task in tasks], tasks, router, lambda batch: batch)
    return server.predict(inputs)


def adapt(
    method: str,
    base: Mapping[str, torch.Tensor],
    experts: Experts,
    encoder: nn.Module,
    heads: Sequence[Head],
    batches: Batches,
    *,
    steps: int,
    lr: float = 1e-3,
    learn: str = "both",
    on_step: Callable[[int, float], None] | None = None,
    **hyperparameters: object,
) -> AdaptationResult:
    """Test-time adaptation by entropy minimisation: ``adamerging`` or ``adarank_{ta,cart,tsv_m,iso_cts}``.

    ``batches(step, t)`` returns task t's unlabelled inputs for that step (``adaptation.batches.batch_sampler`` draws
    them as the pipeline does); ``heads[t]`` is its frozen head. ``hyperparameters`` are the method's declared ones
    (``prior``, the initial coefficient, and ``rank`` / ``common`` / ``granularity``), defaults where unset. The
    result's ``state`` is the final step's model."""
    model = build_adaptive(method, base, _raw(base, experts), learn=learn, **hyperparameters)

    def forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(encoder, state, (x,))

    return _adapt_loop(model, forward, heads, batches, steps, lr, on_step=on_step)


__all__ = [
    "Experts", "load_checkpoint", "save_checkpoint", "task_vectors", "merge", "merge_bank", "fit_task_router",
    "save_router", "load_router", "serve_routed", "adapt",
]
