"""What the routing stages read: the encoder module and its preprocessing, merged single models, heads, cached
features and the mixed test stream (kept apart from tasks/_artifacts.py so routing plumbing never invalidates the
fine-tuning stages)."""

from __future__ import annotations

import torch
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.merging.common import StateDict
from mergeflow.merging_io import load_merged
from mergeflow.models.head import Head
from mergeflow.params import Params
from mergeflow.routing.calibration import prepare_features
from mergeflow.routing.served import InputTransform, Preprocess, TokenIds
from mergeflow.routing.stream import TestStream, mixed_stream
from mergeflow.seeding import torch_generator
from mergeflow.statedict.io import read_safetensors
from tasks._artifacts import base_encoder, base_image_encoder, is_text, load_head, load_split_tensors
from tasks._paths import features_path, merged_path

SPLITS = ("train", "val", "test")


def load_encoder(params: Params) -> tuple[nn.Module, InputTransform]:
    """The encoder module (any weights are swapped in per call) and its input convention."""
    if is_text(params):
        return base_encoder(params), TokenIds()
    visual, (size, mean, std) = base_image_encoder(params)
    return visual.eval(), Preprocess(size, tuple(mean), tuple(std))


def load_single_model(method: str) -> StateDict:
    """A merge@ stage's single merged model (not a mask bank)."""
    merged, metadata = load_merged(merged_path(method))
    if not isinstance(merged, dict):
        raise MergeflowError(f"{merged_path(method)} is a mask bank; a single merged model is needed here")
    if metadata["method"] != method:
        raise MergeflowError(f"{merged_path(method)} holds method {metadata['method']!r}, expected {method!r}")
    return merged


def load_heads(tasks: list[str]) -> list[Head]:
    return [load_head(task) for task in tasks]


def load_features(params: Params, model: str) -> dict[str, dict[str, torch.Tensor]]:
    """{split: {task: (N, D) features}} of a features@ artifact, normalised if ``route.normalize``."""
    tensors, metadata = read_safetensors(features_path(model))
    if metadata.get("model") != model:
        raise MergeflowError(f"{features_path(model)} holds features of {metadata.get('model')!r}; rerun features@{model}")
    features: dict[str, dict[str, torch.Tensor]] = {split: {} for split in SPLITS}
    for task in params.suite.tasks:
        for split in SPLITS:
            key = f"{task}/{split}"
            if key not in tensors:
                raise MergeflowError(f"{features_path(model)} lacks {key!r}: rerun features@{model} for the current suite")
            features[split][task] = prepare_features(tensors[key], params.route.normalize)
    return features


def test_stream(params: Params) -> TestStream:
    """Every task's test split mixed in one order seeded by ``route.seed`` (the same stream for every method)."""
    splits = [load_split_tensors(task, "test")[1:] for task in params.suite.tasks]
    return mixed_stream(splits, torch_generator(params.route.seed, "test-stream"))
