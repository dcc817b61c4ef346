"""Typed access to the parts of an open_clip CLIP (``encode_image``, ``encode_text``, ``logit_scale``, ``visual``).

open_clip has no type stubs and ``nn.Module.__getattr__`` is typed ``Tensor | Module``; these functions only say what
each attribute is, and call or return it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

_Encode = Callable[[torch.Tensor], torch.Tensor]


def encode_image(clip: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``clip.encode_image(images)``: unnormalised image embeddings of preprocessed images."""
    return cast(_Encode, clip.encode_image)(images)


def encode_text(clip: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``clip.encode_text(tokens)``: unnormalised text embeddings of token ids."""
    return cast(_Encode, clip.encode_text)(tokens)


def logit_scale(clip: nn.Module) -> nn.Parameter:
    """``clip.logit_scale``: the learned log temperature."""
    return cast(nn.Parameter, clip.logit_scale)


def visual(clip: nn.Module) -> nn.Module:
    """``clip.visual``: the image tower."""
    return cast(nn.Module, clip.visual)
