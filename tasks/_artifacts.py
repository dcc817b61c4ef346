"""How stages load artifacts into tensors and models (paths come from tasks/_paths.py)."""

from __future__ import annotations

import torch

from torch import nn

from mergeflow.data.image_table import ImageSplit, read_split
from mergeflow.data.suites import suite_kind
from mergeflow.models.backbone import load_clip, preprocess_config
from mergeflow.models.classifier import ImageClassifier
from mergeflow.models.text_classifier import TextClassifier
from mergeflow.params import Params
from mergeflow.statedict.io import load_tensors
from tasks._paths import BASE_MODEL, head_path, split_path, tokens_path


def is_text(params: Params) -> bool:
    return suite_kind(params.suite.name) == "text"


def load_split_tensors(task: str, split: str) -> tuple[ImageSplit | None, torch.Tensor, torch.Tensor]:
    """A split's inputs and labels as torch tensors: uint8 NHWC images, or (N, L) token ids for a text task."""
    tokens = tokens_path(task, split)
    if tokens.exists():
        stored = load_tensors(tokens)
        return None, stored["token_ids"], stored["labels"]
    data = read_split(split_path(task, split))
    return data, torch.from_numpy(data.images), torch.from_numpy(data.labels)


def base_encoder(params: Params) -> nn.Module:
    """theta_0's encoder module: the open_clip image tower, or the text encoder with the base file's weights."""
    if is_text(params):
        from mergeflow.models.text_encoder import load_text_encoder

        encoder, _ = load_text_encoder(params.backbone.pretrained)
        encoder.load_state_dict(load_tensors(BASE_MODEL), strict=True)
        return encoder.eval()
    return load_clip(BASE_MODEL, params.backbone.model).visual


def load_head(task: str) -> torch.Tensor:
    return load_tensors(head_path(task))["head"]


def classifier_for(params: Params, task: str, encoder_state: dict[str, torch.Tensor] | None = None) -> ImageClassifier | TextClassifier:
    """The base backbone's encoder (optionally with other weights loaded, e.g. an expert) and the task's head."""
    if is_text(params):
        encoder = base_encoder(params)
        if encoder_state is not None:
            encoder.load_state_dict(encoder_state, strict=True)
        return TextClassifier(encoder, load_head(task))
    clip = load_clip(BASE_MODEL, params.backbone.model)
    if encoder_state is not None:
        clip.visual.load_state_dict(encoder_state, strict=True)
    size, mean, std = preprocess_config(clip)
    return ImageClassifier(clip.visual, load_head(task), size, mean, std)
