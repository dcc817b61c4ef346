"""open_clip backbones: the built-in tiny ViT (registered as a real open_clip config) or any open_clip name + tag.

Weights move between stages as a safetensors file of the full CLIP state dict; the image encoder's
entries (``statedict.subdict.visual_state_dict``) are what experts, task vectors and merges are made of.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path

import open_clip
import torch
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.statedict.io import read_safetensors, save_tensors

CONFIG_DIR = Path(__file__).parent / "configs"


@functools.cache
def register_builtin_configs() -> None:
    """Make mergeflow's own model configs (e.g. ``mf-vit-tiny``) known to open_clip by name."""
    open_clip.add_model_config(CONFIG_DIR)


def _check_model_name(model_name: str) -> None:
    register_builtin_configs()
    if model_name not in open_clip.list_models():
        known = ", ".join(m for m in open_clip.list_models() if m.startswith(("mf-", "ViT-B", "ViT-L")))
        raise MergeflowError(f"backbone.model: unknown open_clip model {model_name!r}; e.g. {known}")


class _DropRandomInitNotice(logging.Filter):
    """open_clip warns on the root logger whenever ``pretrained`` is None, which is our deliberate default."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init():  # type: ignore[no-untyped-def]
    notice_filter = _DropRandomInitNotice()
    logging.getLogger().addFilter(notice_filter)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(notice_filter)


def create_clip(model_name: str, pretrained: str | None = None, cache_dir: str | None = None) -> nn.Module:
    """Build an open_clip CLIP; ``pretrained`` is an open_clip tag (e.g. ``openai``), a local file, or None (random init).

    A tag downloads weights through open_clip's own hub code; on a machine without network that fails
    with an error that says so.
    """
    _check_model_name(model_name)
    try:
        with _quiet_random_init():
            model = open_clip.create_model(model_name, pretrained=pretrained, cache_dir=cache_dir,
                                           require_pretrained=pretrained is not None)
    except (RuntimeError, OSError, ValueError) as exc:
        raise MergeflowError(
            f"backbone: could not load pretrained weights {pretrained!r} for {model_name!r} ({exc}). Without network "
            "access set `backbone.pretrained: null` to pretrain the backbone in the pipeline, or give a local checkpoint."
        ) from exc
    return model


def clip_tokenizer(model_name: str) -> open_clip.tokenizer.SimpleTokenizer | nn.Module:
    """The tokenizer open_clip pairs with this model (works offline for CLIP BPE models)."""
    _check_model_name(model_name)
    return open_clip.get_tokenizer(model_name)


def save_clip(model: nn.Module, path: str | os.PathLike[str], model_name: str) -> None:
    """Save a CLIP's full state dict as safetensors, with the open_clip model name in the metadata."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_tensors(path, state, metadata={"open_clip_model": model_name})


def load_clip(path: str | os.PathLike[str], model_name: str) -> nn.Module:
    """Rebuild a CLIP from :func:`save_clip`'s file (strict: every key must match the architecture)."""
    tensors, meta = read_safetensors(path)
    saved_name = meta.get("open_clip_model")
    if saved_name is not None and saved_name != model_name:
        raise MergeflowError(f"{path}: holds a {saved_name!r} model but backbone.model is {model_name!r}; rerun `pretrain`")
    model = create_clip(model_name, pretrained=None)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise MergeflowError(f"{path}: does not fit {model_name!r} (missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    return model


def preprocess_config(model: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(image size, mean, std) the image encoder expects, as open_clip records them."""
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
    return size, mean, std
