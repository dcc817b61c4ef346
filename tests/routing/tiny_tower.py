"""What the routed-serving tests share: a real (tiny, randomly initialised) open_clip image tower with its
preprocessing, and three tasks of uint8 images whose statistics differ, so that their features are separable."""

from __future__ import annotations

import torch
from torch import nn

from mergeflow.models.backbone import create_clip, preprocess_config
from mergeflow.routing.served import Preprocess

TASKS = ("bright", "dark", "striped")


def task_images(task: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 NHWC images of task 0 (bright), 1 (dark) or 2 (striped)."""
    noise = torch.randint(0, 40, (count, 32, 32, 3), generator=generator)
    if task == 0:
        return (200 + noise).to(torch.uint8)
    if task == 1:
        return noise.to(torch.uint8)
    stripes = (torch.arange(32) % 4 < 2).to(torch.int64).view(1, 32, 1, 1) * 180
    return (stripes + noise).clamp(0, 255).to(torch.uint8)


def tiny_clip() -> tuple[nn.Module, Preprocess]:
    """mf-vit-tiny from seed 0 and the preprocessing it was built with."""
    torch.manual_seed(0)
    clip = create_clip("mf-vit-tiny")
    size, mean, std = preprocess_config(clip)
    return clip, Preprocess(size, tuple(mean), tuple(std))
