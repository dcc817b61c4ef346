"""The straight-through estimator AdaRank uses for binary masks: hard 0/1 forward, sigmoid gradient backward."""

from __future__ import annotations

import torch

from mergeflow.declarations.common import check_number
from mergeflow.errors import MergeflowError

MASK_TEMPERATURE = 10.0  # AdaRank's mask_temp in every shipped config; see docs/methods.md §3(c) before changing it


def ste_mask(logits: torch.Tensor, temperature: float = MASK_TEMPERATURE) -> torch.Tensor:
    """h = 1[m > 0] in the forward pass (m == 0 is pruned), gradient of p = sigmoid(m / temperature) backward.

    Written as p + stopgrad(h - p): the forward value is exactly h (h - p is exact for h in {0, 1} and p >= 1/2
    when h = 1, by Sterbenz's lemma, so p + (h - p) rounds to h), and d/dm = p (1 - p) / temperature.
    """
    temperature = check_number("temperature", temperature)
    if temperature <= 0:
        raise MergeflowError(f"temperature must be > 0, got {temperature!r}")
    soft = torch.sigmoid(logits / temperature)
    hard = (logits > 0).to(soft.dtype)
    return soft + (hard - soft).detach()


def masked_values(values: torch.Tensor, logits: torch.Tensor, temperature: float = MASK_TEMPERATURE) -> torch.Tensor:
    """s~ = p * s + stopgrad((h - p) * s), computed as s * ste_mask(m) so the forward value is h * s *exactly*.

    The two forms have the same gradient (d s~/d m = s p (1 - p) / temperature); AdaRank's literal form can
    miss h * s by an ulp in the forward pass, because p*s + (1-p)*s need not round to s.
    """
    return values * ste_mask(logits, temperature)
