"""Top-1 accuracy of a classifier on uint8 images, in batches, without gradients."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Argmax class per image."""
    model.eval()
    return torch.cat([model(images[i : i + batch_size]).argmax(dim=-1) for i in range(0, len(images), batch_size)])


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    """Fraction of images whose argmax equals the label."""
    if len(images) == 0:
        raise ValueError("cannot compute accuracy on an empty split")
    return float((predict(model, images, batch_size) == labels).float().mean())
