"""CART: centre the task vectors on the experts' average, keep a low-rank part of each, and add it back scaled."""

from __future__ import annotations

import torch

from mergeflow.declarations.common import check_choice, check_fraction, check_number
from mergeflow.declarations.merging import SVD_CHOICES
from mergeflow.merging.common import StateDict, TaskVectors
from mergeflow.merging.plan import InMemoryVectors, KeyVectors, MergePlan, as_delta, in_memory
from mergeflow.merging.predicates import KeyPredicate, is_cart_matrix
from mergeflow.merging.scaled import ScaledMerge
from mergeflow.merging.spectral import spectral_key, spectral_plan
from mergeflow.merging.top_svd import top_svd
from mergeflow.runtime.device import CPU


def cart_rank(rank: int, fraction: float) -> int:
    """Components kept per centred task vector: max(1, int(fraction * r)), except fraction 0 which keeps none."""
    return 0 if fraction == 0 else max(1, int(fraction * rank))


def cart(
    task_vectors: TaskVectors, *, scale: float = 2.0, rank: float = 0.12, svd: str = "exact",
    is_matrix: KeyPredicate = is_cart_matrix, device: torch.device = CPU,
) -> StateDict:
    """The CART delta from theta_0: mean_t tau_t + scale * sum_t LR_k(tau_t - mean_s tau_s) on matrix keys.

    theta_0 plus it is theta_avg + lambda * sum_t LR_k(tau_bar_t), lambda = ``scale`` multiplying a *sum*.
    Non-matrix keys are theta_avg exactly (the authors add sum_t tau_bar_t, which is 0 up to rounding).
    Defaults are the authors' ViT-B/32 8-task config (prior 2.0, initial_rank_ratio 0.12). The optional
    energy-threshold rank rule is not implemented. ``svd`` decomposes exactly (thin SVD) or with ``torch.svd_lowrank``
    (``merging.top_svd``); the SVDs run on ``device``; the delta is on the task vectors' device.
    """
    return as_delta(in_memory(cart_plan, task_vectors, scale=scale, rank=rank, svd=svd, is_matrix=is_matrix, device=device))


def cart_plan(vectors: KeyVectors, *, scale: float = 2.0, rank: float = 0.12, svd: str = "exact",
              is_matrix: KeyPredicate = is_cart_matrix, device: torch.device = CPU) -> MergePlan:
    """CART key by key (no global pass); see :func:`cart`."""
    scale = check_number("scale", scale)
    rank = check_fraction("rank", rank, allow_zero=True)
    svd = check_choice("svd", svd, SVD_CHOICES)

    def merge_matrix(stack: torch.Tensor, transposed: bool) -> torch.Tensor:
        average = stack.mean(dim=0)
        low_rank = _low_rank_sum(stack, average, rank, svd)
        return average if low_rank is None else average + scale * low_rank

    return spectral_plan(is_matrix, merge_matrix, 1.0, device)


def _low_rank_sum(stack: torch.Tensor, average: torch.Tensor, rank: float, svd: str) -> torch.Tensor | None:
    """sum_t LR_k(tau_t - average) at one (T, m, n) key, or None when the rank keeps no component."""
    kept = cart_rank(stack.shape[2], rank)
    if kept == 0:
        return None
    left, values, right = top_svd(stack - average, kept, svd)
    return ((left * values[:, None, :]) @ right).sum(dim=0)


def cart_parts(task_vectors: TaskVectors, *, rank: float = 0.12, svd: str = "exact", is_matrix: KeyPredicate = is_cart_matrix,
               device: torch.device = CPU) -> ScaledMerge:
    """CART as offset (the average) + scale * direction (the low-rank sum), so a scale grid needs one SVD pass.

    Both terms go through ``spectral_key`` exactly as :func:`cart_plan`'s kernel computes them. Non-matrix keys have
    no direction (the kernel leaves them at the average); a rank keeping nothing gives a zero direction.
    """
    rank = check_fraction("rank", rank, allow_zero=True)
    vectors = InMemoryVectors(task_vectors)

    def average(stack: torch.Tensor, transposed: bool) -> torch.Tensor:
        return stack.mean(dim=0)

    def direction(stack: torch.Tensor, transposed: bool) -> torch.Tensor:
        low_rank = _low_rank_sum(stack, stack.mean(dim=0), rank, svd)
        return torch.zeros_like(stack[0]) if low_rank is None else low_rank

    offsets: StateDict = {}
    directions: StateDict = {}
    for key in vectors.keys:
        tensors = vectors.tensors(key)
        offsets[key] = spectral_key(key, tensors, is_matrix, average, 1.0, device)
        if is_matrix(key, tensors[0]):
            directions[key] = spectral_key(key, tensors, is_matrix, direction, 1.0, device)
    return ScaledMerge(direction=directions, offset=offsets)
