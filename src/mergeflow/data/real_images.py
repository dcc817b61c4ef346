"""A real task's split as tensors: the manifest's reference opened again, its rows decoded and preprocessed.

Preprocessing is the backbone's own: open_clip's evaluation transform for the base model's config (for the OpenAI
CLIPs: resize the shorter side to the tower's size, bicubic, then centre-crop), applied to each PIL image up to (not
including) its ``ToTensor``; the uint8 pixels it leaves are what the offline suites' tables hold, so every consumer
(:class:`mergeflow.models.classifier.ImageClassifier` normalises with the tower's mean and std) is unchanged. Up to the
uint8 rounding, which open_clip's own PIL resize does too, this is exactly open_clip's ``preprocess``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mergeflow.data.real_manifest import SplitManifest
from mergeflow.data.sources.opening import open_split
from mergeflow.data.sources.reference import DatasetRef
from mergeflow.errors import MergeflowError


def geometry_transform(model_name: str) -> Any:
    """The PIL -> PIL part of open_clip's evaluation preprocessing for ``model_name`` (a ``Compose``)."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict
    from torchvision.transforms import Compose, ToTensor

    from mergeflow.models.backbone import register_builtin_configs

    register_builtin_configs()
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise MergeflowError(f"backbone.model: unknown open_clip model {model_name!r}")
    cfg = merge_preprocess_dict(PreprocessCfg(), config.get("preprocess_cfg", {}))
    cfg = merge_preprocess_dict(cfg, {"size": config["vision_cfg"].get("image_size", 224)})
    steps = []
    for step in image_transform_v2(PreprocessCfg(**cfg), is_train=False).transforms:
        if isinstance(step, ToTensor):
            break
        steps.append(step)
    return Compose(steps)


def load_manifest_images(manifest: SplitManifest, model_name: str, cache_dir: str | None = None, *,
                         description: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, S, S, 3) images and int64 (N,) labels of a manifest's rows, S the backbone's image size."""
    ref = DatasetRef.from_dict(manifest.reference)
    split = open_split(ref, manifest.source_split, class_names=tuple(manifest.class_names), cache_dir=cache_dir)
    if list(split.class_names) != list(manifest.class_names):
        raise MergeflowError(f"{split.name}: its classes changed since prepare ran; rerun `dvc repro -f -s prepare@{manifest.task}`")
    transform = geometry_transform(model_name)
    rows = split.select(manifest.rows)
    images: list[np.ndarray] = []
    labels: list[int] = []
    for example in tqdm(rows, desc=description or f"decode {manifest.task}/{manifest.split}", unit="image", leave=False,
                        mininterval=2.0):
        pixels = np.asarray(transform(example.input), dtype=np.uint8)
        if pixels.ndim != 3 or pixels.shape[-1] != 3:
            raise MergeflowError(f"{split.name}: row {example.index} gave pixels of shape {pixels.shape}, not (S, S, 3)")
        images.append(pixels)
        labels.append(example.label)
    if not images:
        raise MergeflowError(f"{split.name}: the manifest of {manifest.task}/{manifest.split} selects no rows")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)
