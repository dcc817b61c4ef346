"""An image classifier = open_clip image encoder + a frozen head, fed with raw uint8 images.

Preprocessing lives here (resize to the encoder's size, scale, normalise with its mean/std) so that the
same 32x32 suite images can drive the tiny built-in ViT or a 224-pixel ViT-B/32 unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def preprocess_images(images: torch.Tensor, image_size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, S, S), resized (bicubic) when S differs and normalised."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


class ImageClassifier(nn.Module):
    """Image encoder with a frozen head; logits = head @ normalise(encoder(x))."""

    head: torch.Tensor  # a buffer (registered in __init__)

    def __init__(self, encoder: nn.Module, head: torch.Tensor, image_size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("head", head.detach().clone(), persistent=False)
        self.image_size = image_size
        self.mean = tuple(mean)
        self.std = tuple(std)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings of uint8 images."""
        return self.encoder(preprocess_images(images, self.image_size, self.mean, self.std))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.features(images), dim=-1) @ self.head.T
