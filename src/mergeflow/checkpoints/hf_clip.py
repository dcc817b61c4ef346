"""Hugging Face CLIP checkpoints (FusionBench's experts, ``openai/clip-vit-*``): the image tower in open_clip keys,
and zero-shot heads from the Hugging Face text tower.

A folder written by ``save_pretrained`` (or a hub id, passed to ``from_pretrained`` unchanged: it needs network or the
local cache) is loaded with the class its config names, so every weight is checked against the architecture; the
vision weights then go through :mod:`mergeflow.checkpoints.clip_keys` to the canonical open_clip layout.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from mergeflow.checkpoints.clip_keys import HF_PROJECTION, hf_to_open_clip
from mergeflow.errors import MergeflowError
from mergeflow.models.text_backbone import quiet_transformers

if TYPE_CHECKING:  # importing transformers costs about a second; only loading needs it
    from transformers import PreTrainedTokenizerBase

CLIP_CLASSES = ("CLIPModel", "CLIPVisionModel", "CLIPVisionModelWithProjection")
_BY_MODEL_TYPE = {"clip": "CLIPModel", "clip_vision_model": "CLIPVisionModel"}


def _source(name_or_path: str | os.PathLike[str]) -> str:
    return os.fspath(Path(name_or_path).expanduser()) if isinstance(name_or_path, os.PathLike) else name_or_path


def _load_error(where: str, exc: Exception) -> MergeflowError:
    hint = "" if os.path.isdir(where) else "; a hub id needs network access or the local Hugging Face cache"
    return MergeflowError(f"Hugging Face CLIP {where!r} could not be loaded ({str(exc).splitlines()[0]}){hint}; "
                          "a folder written by save_pretrained loads offline")


def load_hf_clip(name_or_path: str | os.PathLike[str]) -> nn.Module:
    """A ``CLIPModel``, ``CLIPVisionModel`` or ``CLIPVisionModelWithProjection`` (the class its config names), in
    eval mode; an error if any weight of the architecture is missing from the checkpoint (it would stay random)."""
    import transformers

    where = _source(name_or_path)
    try:
        with quiet_transformers():
            config = transformers.AutoConfig.from_pretrained(where)
            named = [name for name in (getattr(config, "architectures", None) or []) if name in CLIP_CLASSES]
            class_name = named[0] if named else _BY_MODEL_TYPE.get(str(getattr(config, "model_type", "")))
            if class_name is None:
                raise MergeflowError(f"{where}: a {config.model_type!r} model (architectures "
                                     f"{getattr(config, 'architectures', None)}), not one of {', '.join(CLIP_CLASSES)}")
            model, info = getattr(transformers, class_name).from_pretrained(where, output_loading_info=True)
    except (OSError, ValueError) as exc:
        raise _load_error(where, exc) from exc
    missing = sorted(info.get("missing_keys", ()))
    mismatched = sorted(str(key) for key in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise MergeflowError(f"{where}: the checkpoint lacks {missing[:5]} / mismatches {mismatched[:5]} of its {class_name}; "
                             "those weights would stay random")
    return cast(nn.Module, model).eval()


def load_hf_tokenizer(name_or_path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a CLIP (``AutoTokenizer``), for :func:`hf_zero_shot_head`."""
    from transformers import AutoTokenizer

    where = _source(name_or_path)
    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as exc:
        raise _load_error(where, exc) from exc


def hf_projection(model: nn.Module) -> torch.Tensor:
    """A ``CLIPModel``'s ``visual_projection.weight``: the projection a ``CLIPVisionModel`` expert of it lacks."""
    weight = model.state_dict().get(HF_PROJECTION)
    if weight is None:
        raise MergeflowError(f"a {type(model).__name__} has no `{HF_PROJECTION}`; load the base CLIPModel instead")
    return weight.detach()


def hf_clip_vision_state(model: nn.Module | str | os.PathLike[str], projection: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The image tower of a Hugging Face CLIP (a model, a folder or a hub id) in open_clip ``visual.*`` keys.

    A ``CLIPVisionModel`` has no projection: without ``projection`` (e.g. :func:`hf_projection` of its base) the result
    has no ``visual.proj`` and embeds images as ``width``-wide pooled features (see :mod:`mergeflow.checkpoints.clip_keys`).
    """
    where = type(model).__name__ if isinstance(model, nn.Module) else _source(model)
    module = model if isinstance(model, nn.Module) else load_hf_clip(model)
    state = {key: value.detach() for key, value in module.state_dict().items()}
    return hf_to_open_clip(state, projection=projection, where=where)


def _text_parts(model: nn.Module) -> tuple[nn.Module, nn.Module, torch.Tensor, int]:
    """(text model, text projection, logit scale, context length) of a ``CLIPModel``; an error for a vision model."""
    parts = [getattr(model, name, None) for name in ("text_model", "text_projection", "logit_scale")]
    if any(part is None for part in parts):
        raise MergeflowError(f"a {type(model).__name__} has no text tower: zero-shot heads need the full CLIPModel "
                             "(e.g. the experts' base, openai/clip-vit-base-patch32)")
    config = cast(Any, model).config  # a PretrainedConfig: nn.Module's __getattr__ is typed Tensor | Module
    return (cast(nn.Module, parts[0]), cast(nn.Module, parts[1]), cast(torch.Tensor, parts[2]),
            int(config.text_config.max_position_embeddings))


@torch.no_grad()
def hf_zero_shot_head(model: nn.Module, tokenizer: PreTrainedTokenizerBase, class_names: Sequence[str],
                      templates: Sequence[str]) -> torch.Tensor:
    """Zero-shot head for one task from a ``CLIPModel``'s text tower, as :func:`mergeflow.models.heads.zero_shot_head`
    builds it for open_clip: each row is the mean of the L2-normalised embeddings of a class's prompts, renormalised,
    times ``logit_scale.exp()``; shape (classes, embed_dim)."""
    if not class_names or not templates:
        raise ValueError("a head needs at least one class name and one template")
    text_model, text_projection, logit_scale, context = _text_parts(model)
    model.eval()
    device = logit_scale.device
    rows = []
    for name in class_names:
        batch = tokenizer([template.format(name) for template in templates], padding=True, truncation=True,
                          max_length=context, return_tensors="pt")
        pooled = text_model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).pooler_output
        embeddings = F.normalize(text_projection(pooled), dim=-1)
        rows.append(F.normalize(embeddings.mean(dim=0), dim=-1))
    return torch.stack(rows) * logit_scale.exp()
