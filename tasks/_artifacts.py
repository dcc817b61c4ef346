"""How stages load artifacts into tensors and models (paths come from tasks/_paths.py)."""

from __future__ import annotations

import torch

from mergeflow.data.image_table import ImageSplit, read_split
from mergeflow.models.backbone import load_clip, preprocess_config
from mergeflow.models.classifier import ImageClassifier
from mergeflow.params import Params
from mergeflow.statedict.io import load_tensors
from tasks._paths import BASE_MODEL, head_path, split_path


def load_split_tensors(task: str, split: str) -> tuple[ImageSplit, torch.Tensor, torch.Tensor]:
    """A split with its images and labels as torch tensors (uint8 NHWC, int64)."""
    data = read_split(split_path(task, split))
    return data, torch.from_numpy(data.images), torch.from_numpy(data.labels)


def load_head(task: str) -> torch.Tensor:
    return load_tensors(head_path(task))["head"]


def classifier_for(params: Params, task: str, encoder_state: dict[str, torch.Tensor] | None = None) -> ImageClassifier:
    """The base backbone's image encoder (optionally with other weights loaded, e.g. an expert) and the task's head."""
    clip = load_clip(BASE_MODEL, params.backbone.model)
    if encoder_state is not None:
        clip.visual.load_state_dict(encoder_state, strict=True)
    size, mean, std = preprocess_config(clip)
    return ImageClassifier(clip.visual, load_head(task), size, mean, std)
