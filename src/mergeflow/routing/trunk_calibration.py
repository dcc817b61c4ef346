"""Calibration at every split of a shared trunk: the per-task Gaussians fitted on the features after block L.

The same inputs and rules as ``calibrate`` (``route.samples`` rows per task drawn by ``calibration_rows``, the same
eps, the reject threshold from held-in inputs), only the features differ; one trunk pass per input yields the
features of every L (each block's output pooled as the final features are), so a whole L-curve costs one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from mergeflow.models.vit_split import SplitTower
from mergeflow.routing.calibration import Calibrated, calibrate, calibration_rows, prepare_features
from mergeflow.routing.features import extract_features
from mergeflow.runtime.device import CPU


def every_split_encoder(tower: SplitTower, weights: Mapping[str, torch.Tensor],
                        preprocess: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 images -> (B, (blocks + 1) * D): the features at L = 0, 1, ..., blocks side by side (split them with
    ``torch.chunk(features, blocks + 1, dim=-1)``)."""

    def encode(images: torch.Tensor) -> torch.Tensor:
        hidden = tower.stem(weights, preprocess(images))
        features = [tower.pooled(weights, hidden)]
        for block in range(tower.blocks):
            hidden = tower.blocks_between(weights, hidden, block, block + 1)
            features.append(tower.pooled(weights, hidden))
        return torch.cat(features, dim=-1)

    return encode


def features_by_split(tower: SplitTower, weights: Mapping[str, torch.Tensor], preprocess: Callable[[torch.Tensor], torch.Tensor],
                      images: torch.Tensor, batch_size: int, device: torch.device = CPU, autocast: str = "none") -> list[torch.Tensor]:
    """[(N, D) features at L] for L = 0..blocks, on the CPU, from one trunk pass over ``images``."""
    joined = extract_features(every_split_encoder(tower, weights, preprocess), images, batch_size, "features by split", device, autocast)
    return list(torch.chunk(joined, tower.blocks + 1, dim=-1))


def calibrate_every_split(
    name: str,
    tasks: Sequence[str],
    train_images: Sequence[torch.Tensor],
    held_in_images: Sequence[torch.Tensor],
    extract: Callable[[torch.Tensor], list[torch.Tensor]],
    *,
    samples: int,
    eps: float,
    seed: int,
    quantile: float,
    normalize: bool = False,
) -> list[Calibrated]:
    """One fitted router per split L = 0..blocks; ``extract(images)`` gives the features at every L (``features_by_split``).

    Only the calibration rows of each task's training images are embedded (the rows ``calibrate`` would draw)."""
    drawn = [images[calibration_rows(len(images), task, samples, seed)] for task, images in zip(tasks, train_images, strict=True)]
    train = [extract(images) for images in drawn]  # [task][L]
    held_in = [extract(images) for images in held_in_images]
    splits = len(train[0])
    return [
        calibrate(name, tasks, [prepare_features(per_task[split], normalize) for per_task in train],
                  [prepare_features(per_task[split], normalize) for per_task in held_in],
                  samples=None, eps=eps, seed=seed, quantile=quantile)
        for split in range(splits)
    ]
