"""Feature extraction for routing: a merged model's image embeddings for many inputs, in batches, no gradients."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm import tqdm

from mergeflow.runtime.device import CPU, autocast_context


@torch.no_grad()
def extract_features(encode: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int, description: str = "features",
                     device: torch.device = CPU, autocast: str = "none") -> torch.Tensor:
    """(N, D) float32 embeddings of uint8 images, on the CPU; ``encode`` maps a batch of uint8 images to (B, D) and
    gets each batch on ``device`` (its model must be there)."""
    with autocast_context(autocast, device):
        batches = [
            encode(images[first : first + batch_size].to(device)).float().cpu()
            for first in tqdm(range(0, len(images), batch_size), desc=description, unit="batch", leave=False)
        ]
    return torch.cat(batches) if batches else torch.empty(0, 0)
