"""What the adaptation stages read and build: base weights, task vectors, heads, the encoder as a function of a state
dict, and seeded unlabelled test batches (kept apart from other stage helpers so adaptation plumbing never
invalidates the merge or routing stages)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mergeflow.params import Params
from mergeflow.adaptation.loop import AdaptationResult, adapt
from mergeflow.adaptation.methods import build_adaptive
from mergeflow.adaptation.model import AdaptiveMerge
from mergeflow.routing.served import Preprocess, SwappableEncoder
from mergeflow.seeding import torch_generator
from tasks._artifacts import load_split_tensors
from tasks._merge_inputs import load_base_visual, load_task_vectors
from tasks._routing_inputs import load_encoder, load_heads


def unlabelled_pools(params: Params, preprocess: Preprocess, fraction: float, seed: int) -> list[torch.Tensor]:
    """Per task, preprocessed test inputs the batches are drawn from: the first ceil(fraction * n) of a seeded
    permutation (labels are never read: adaptation is unsupervised)."""
    pools = []
    for task in params.suite.tasks:
        images = load_split_tensors(task, "test")[1]
        order = torch.randperm(len(images), generator=torch_generator(seed, "adapt-pool", task))
        keep = max(1, math.ceil(fraction * len(images)))
        pools.append(preprocess(images[order[:keep]]))
    return pools


def batch_sampler(pools: list[torch.Tensor], batch_size: int, seed: int) -> Callable[[int, int], torch.Tensor]:
    """batches(step, task): ``batch_size`` inputs of the task's pool without replacement within a batch, from a
    per-task generator (a run is reproducible; the loop asks for tasks in order at every step)."""
    generators = [torch_generator(seed, "adapt-batches", index) for index in range(len(pools))]

    def batches(step: int, task: int) -> torch.Tensor:
        pool = pools[task]
        return pool[torch.randperm(len(pool), generator=generators[task])[:batch_size]]

    return batches


def run_adaptation(params: Params, method: str, *, learn: str | None = None, fraction: float | None = None) -> tuple[AdaptiveMerge, AdaptationResult]:
    """adapt@METHOD's run (or an analysis variant: another ``learn`` or test-data ``fraction``), seeded by adapt.seed."""
    settings = params.adapt
    module, preprocess = load_encoder(params)
    encoder = SwappableEncoder(module)
    base, task_vectors = load_base_visual(), load_task_vectors(params.suite.tasks)
    options = getattr(settings, method).model_dump(exclude_none=True)
    if method != "adamerging":
        options["learn"] = learn or settings.learn
    model = build_adaptive(method, base, task_vectors, **options)
    pools = unlabelled_pools(params, preprocess, settings.data_fraction if fraction is None else fraction, settings.seed)
    result = adapt(model, lambda state, pixels: encoder(state, pixels), load_heads(params.suite.tasks),
                   batch_sampler(pools, settings.batch_size, settings.seed), settings.steps, settings.lr)
    return model, result
