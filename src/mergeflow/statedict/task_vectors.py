"""Task vectors tau = theta_expert - theta_pretrained, over floating-point entries only (integer buffers are skipped)."""

from __future__ import annotations

import re

import torch

from mergeflow.errors import MergeflowError


def check_compatible(base: dict[str, torch.Tensor], other: dict[str, torch.Tensor], other_name: str) -> None:
    """Same keys, shapes and dtypes, or one error naming the first difference."""
    missing, extra = sorted(set(base) - set(other)), sorted(set(other) - set(base))
    if missing or extra:
        raise MergeflowError(f"{other_name}: keys differ from the base model (missing {missing[:5]}, unexpected {extra[:5]})")
    for key, value in base.items():
        if other[key].shape != value.shape:
            raise MergeflowError(f"{other_name}: {key!r} has shape {tuple(other[key].shape)}, base has {tuple(value.shape)}")
        if other[key].dtype != value.dtype:
            raise MergeflowError(f"{other_name}: {key!r} has dtype {other[key].dtype}, base has {value.dtype}")


def task_vector(expert: dict[str, torch.Tensor], base: dict[str, torch.Tensor], expert_name: str = "expert") -> dict[str, torch.Tensor]:
    """tau_t = theta_t - theta_0 for every floating-point entry (computed in the entry's own dtype)."""
    check_compatible(base, expert, expert_name)
    return {key: expert[key] - value for key, value in base.items() if value.is_floating_point()}


def without_frozen(tau: dict[str, torch.Tensor], patterns: list[str]) -> dict[str, torch.Tensor]:
    """tau without the entries whose key fully matches one of ``patterns``: every merge then keeps theta_0's values
    there (AdaRank's language models leave the embeddings out of their task vectors). A pattern that matches nothing
    is a typo, and one that leaves nothing would make every merge theta_0: both are errors."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise MergeflowError(f"frozen key pattern {pattern!r} is not a regular expression ({exc})") from None
    unused = [c.pattern for c in compiled if not any(c.fullmatch(key) for key in tau)]
    if unused:
        raise MergeflowError(f"frozen key patterns {unused} match no task-vector key (keys look like {sorted(tau)[:3]})")
    kept = {key: value for key, value in tau.items() if not any(c.fullmatch(key) for c in compiled)}
    if not kept:
        raise MergeflowError(f"frozen key patterns {patterns} match every task-vector key: every merge would be theta_0")
    return kept


def apply_task_vector(base: dict[str, torch.Tensor], tau: dict[str, torch.Tensor], scale: float = 1.0) -> dict[str, torch.Tensor]:
    """theta_0 + scale * tau; entries absent from tau (integer buffers) are copied from the base."""
    unknown = sorted(set(tau) - set(base))
    if unknown:
        raise MergeflowError(f"task vector has keys the base model lacks: {unknown[:5]}")
    return {key: _plus_scaled(value, tau[key], scale) if key in tau else value.clone() for key, value in base.items()}


def _plus_scaled(value: torch.Tensor, delta: torch.Tensor, scale: float) -> torch.Tensor:
    """``value + scale * delta`` with the same bits, adding into the scaled copy instead of allocating a second
    tensor (half the time on an encoder, which a validation grid pays once per value and task)."""
    if delta.dtype != value.dtype or delta.shape != value.shape:
        return value + scale * delta
    return torch.mul(delta, scale).add_(value)
