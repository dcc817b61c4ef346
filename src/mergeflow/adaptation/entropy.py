"""The test-time adaptation objective: the mean Shannon entropy of the predicted class distribution."""

from __future__ import annotations

import torch


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """mean over the batch of -sum_c softmax * log_softmax (log_softmax, not log(softmax), stays finite when a
    probability underflows to 0)."""
    log_probabilities = torch.log_softmax(logits, dim=-1)
    return -(log_probabilities.exp() * log_probabilities).sum(dim=-1).mean()
