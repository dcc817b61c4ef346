"""Top-1 accuracy of a classifier on uint8 images, in batches, without gradients."""

from __future__ import annotations

import torch
from torch import nn

from mergeflow.runtime.device import CPU, autocast_context


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device = CPU,
            autocast: str = "none") -> torch.Tensor:
    """Argmax class per image, on the CPU; ``model`` is moved to ``device`` and each batch runs there."""
    model.to(device).eval()
    with autocast_context(autocast, device):
        return torch.cat([model(images[i : i + batch_size].to(device)).argmax(dim=-1).cpu() for i in range(0, len(images), batch_size)])


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device = CPU,
             autocast: str = "none") -> float:
    """Fraction of images whose argmax equals the label (the model run on ``device``, see :func:`predict`)."""
    if len(images) == 0:
        raise ValueError("cannot compute accuracy on an empty split")
    return float((predict(model, images, batch_size, device, autocast) == labels).float().mean())
