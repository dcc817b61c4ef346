"""How stages load artifacts into tensors and models (paths come from tasks/_paths.py)."""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING

import torch
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.models.classifier import ImageClassifier
from mergeflow.models.head import Head, linear_head
from mergeflow.models.text_classifier import TextClassifier
from mergeflow.params import Params
from mergeflow.statedict.io import load_tensors, read_safetensors
from tasks._paths import BASE_MODEL, head_path, split_path, tokens_path

if TYPE_CHECKING:
    from mergeflow.data.image_table import ImageSplit

# mergeflow.models.backbone (open_clip: torchvision, timm, transformers; seconds to import) and the Parquet reader
# (pyarrow) are imported inside the functions that use them, so stages that only do tensor math start fast.


def is_text(params: Params) -> bool:
    return params.suite.kind == "text"


def load_split_tensors(task: str, split: str) -> tuple[ImageSplit | None, torch.Tensor, torch.Tensor]:
    """A split's inputs and labels as torch tensors: uint8 NHWC images, or (N, L) token ids for a text task.

    The one place that knows the three kinds of prepared split: a text task's token ids, an offline suite's pixel
    table, or a real task's manifest (its reference opened again and its rows decoded with the base model's own
    preprocessing: mergeflow.data.real_images; the ImageSplit is then None, as for text)."""
    tokens = tokens_path(task, split)
    if tokens.exists():
        stored = load_tensors(tokens)
        return None, stored["token_ids"], stored["labels"]
    from mergeflow.data.real_manifest import is_manifest

    if is_manifest(split_path(task, split)):
        return (None, *_real_split(task, split))
    from mergeflow.data.image_table import read_split

    data = read_split(split_path(task, split))
    return data, torch.from_numpy(data.images), torch.from_numpy(data.labels)


def _real_split(task: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A real task's split decoded for the base model (its open_clip name from the base file's metadata)."""
    from mergeflow.data.real_images import load_manifest_images
    from mergeflow.data.real_manifest import read_manifest
    model_name = base_file_metadata().get("open_clip_model")
    if model_name is None:
        raise MergeflowError(f"{BASE_MODEL}: no open_clip model name in its metadata; rerun `pretrain`")
    manifest = read_manifest(split_path(task, split))
    return load_manifest_images(manifest, model_name, manifest.cache_dir)


def base_file_metadata() -> dict[str, str]:
    """theta_0's file metadata (its open_clip name, or a Hugging Face model's config and token ids), header only."""
    from mergeflow.statedict.lazy import LazySafetensors

    with LazySafetensors(BASE_MODEL) as lazy:
        return dict(lazy.metadata)


@functools.lru_cache(maxsize=1)
def _loaded_base(path: str, mtime_ns: int, size: int, text: bool, model: str, pretrained: str | None) -> nn.Module:
    """theta_0's encoder as stored (the open_clip image tower, or the text encoder), built once per process and base file: a stage that
    scores 8 tasks or stacks 8 LoRA experts would otherwise rebuild it (and re-read the file) 8 times."""
    if text:
        tensors, metadata = read_safetensors(path)
        if metadata.get("architecture") in ("sequence_classifier", "causal_lm"):
            from mergeflow.models.sequence_encoder import encoder_from_metadata

            return encoder_from_metadata(metadata, tensors).eval()
        from mergeflow.models.text_encoder import load_text_encoder

        encoder, _ = load_text_encoder(pretrained)
        encoder.load_state_dict(tensors, strict=True)
        return encoder.eval()
    from mergeflow.models.backbone import load_image_tower

    return load_image_tower(path, model)  # the image tower only: no stage here needs the text tower


def _base(params: Params) -> nn.Module:
    """The cached theta_0 (never handed out: callers get deep copies, so training or loading weights into one
    leaves the next call's module as fresh as a new load). A missing file is left to the loaders' own errors."""
    path = BASE_MODEL.resolve()
    stat = path.stat() if path.exists() else None
    return _loaded_base(str(path), stat.st_mtime_ns if stat else -1, stat.st_size if stat else -1, is_text(params),
                        params.backbone.model, params.backbone.pretrained)


def base_encoder(params: Params) -> nn.Module:
    """theta_0's encoder module: the open_clip image tower, or the text encoder with the base file's weights."""
    return copy.deepcopy(_base(params))


def base_image_encoder(params: Params) -> tuple[nn.Module, tuple[int, tuple[float, ...], tuple[float, ...]]]:
    """theta_0's open_clip image tower (a fresh copy) and its (image size, mean, std) preprocessing."""
    from mergeflow.models.backbone import preprocess_config

    tower = _base(params)
    return copy.deepcopy(tower), preprocess_config(tower)


def load_head(task: str) -> Head:
    """A task's frozen head: its (classes, D) matrix, a sequence classifier's head module (rebuilt from the base
    file's model config, its weights from the head file), or a causal LM's label-word rows as a linear layer."""
    tensors, metadata = read_safetensors(head_path(task))
    if metadata.get("head_kind") == "label_words":
        return linear_head(tensors)
    if metadata.get("head_kind") != "sequence":
        return tensors["head"]
    from mergeflow.models.sequence_encoder import head_from_metadata

    return head_from_metadata(base_file_metadata(), int(metadata["num_labels"]), state=tensors)


def classifier_for(params: Params, task: str, encoder_state: dict[str, torch.Tensor] | None = None) -> ImageClassifier | TextClassifier:
    """The base backbone's encoder (optionally with other weights loaded, e.g. an expert) and the task's head."""
    if is_text(params):
        encoder = base_encoder(params)
        if encoder_state is not None:
            encoder.load_state_dict(encoder_state, strict=True)
        return TextClassifier(encoder, load_head(task))
    visual, (size, mean, std) = base_image_encoder(params)
    if encoder_state is not None:
        visual.load_state_dict(encoder_state, strict=True)
    head = load_head(task)
    if not isinstance(head, torch.Tensor):
        raise MergeflowError(f"{task}: a vision task's head is a (classes, D) matrix; rerun `heads`")
    return ImageClassifier(visual, head, size, mean, std)
