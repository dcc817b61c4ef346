"""An open_clip image tower's forward cut at block L: stem, blocks [start, stop), pooled output — each with any weights.

Shared-trunk serving runs the first L blocks once with one model's weights and the rest with another's, so the
tower's forward (``VisionTransformer.forward``: ``_embeds`` → ``transformer.resblocks`` → ``_pool`` → ``proj``) is
rebuilt here from its own parts, in pieces, each under ``torch.func.functional_call`` (no copy into parameters).
Keys are the tower's state-dict keys; a piece reads only its own keys, so a weights dict may hold just those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import cast

import torch
from torch import nn
from torch.func import functional_call

from mergeflow.errors import MergeflowError

_STEM = ("conv1.", "class_embedding", "positional_embedding", "ln_pre.", "patch_dropout.")
_BLOCKS = "transformer.resblocks."
_Embeds = Callable[[torch.Tensor], torch.Tensor]  # open_clip is untyped: what its tower methods take and give
_Pool = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _resblocks(tower: nn.Module) -> nn.ModuleList:
    transformer = getattr(tower, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    if not isinstance(blocks, nn.ModuleList) or not all(hasattr(tower, name) for name in ("_embeds", "_pool", "proj")):
        raise MergeflowError(f"{type(tower).__name__} is not an open_clip VisionTransformer: only image towers split at a block")
    return blocks


def block_count(tower: nn.Module) -> int:
    """Number of transformer blocks: the largest valid split."""
    return len(_resblocks(tower))


def check_split(tower: nn.Module, split: int) -> int:
    """``split`` if it is a block index in [0, blocks], else one MergeflowError naming the range."""
    blocks = block_count(tower)
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split <= blocks:
        raise MergeflowError(f"shared-trunk split {split!r} is not a block count in [0, {blocks}] for this {blocks}-block tower")
    return split


def piece_of(key: str) -> int | str:
    """Which piece reads ``key``: "stem", a block index, or "final" (ln_post, proj, attention pooling)."""
    if key.startswith(_STEM):
        return "stem"
    if key.startswith(_BLOCKS):
        return int(key[len(_BLOCKS):].split(".", 1)[0])
    return "final"


def keys_after(keys: Iterable[str], split: int) -> list[str]:
    """The keys a continuation from block ``split`` reads: blocks >= split and the final pieces (the stem too at 0)."""
    wanted = []
    for key in keys:
        piece = piece_of(key)
        if piece == "final" or (piece == "stem" and split == 0) or (isinstance(piece, int) and piece >= split):
            wanted.append(key)
    return wanted


class _Piece(nn.Module):
    """Runs one piece of ``tower``; a module so functional_call can swap the tower's weights around it."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, x: torch.Tensor, piece: str, start: int = 0, stop: int = 0) -> torch.Tensor:
        if piece == "stem":
            return cast(_Embeds, self.tower._embeds)(x)
        if piece == "blocks":
            transformer = cast(nn.Module, self.tower.transformer)
            batch_first = bool(getattr(transformer, "batch_first", True))
            x = x if batch_first else x.transpose(0, 1)
            for block in _resblocks(self.tower)[start:stop]:
                x = block(x, attn_mask=None)
            return x if batch_first else x.transpose(0, 1)
        pooled, _ = cast(_Pool, self.tower._pool)(x)
        proj = self.tower.proj
        return pooled @ proj if isinstance(proj, torch.Tensor) else pooled


class SplitTower:
    """One image tower run piece by piece with any weights (the tower's own forward, cut at block boundaries)."""

    def __init__(self, tower: nn.Module) -> None:
        self.blocks = block_count(tower)
        self._piece = _Piece(tower.eval())

    def _run(self, weights: Mapping[str, torch.Tensor], x: torch.Tensor, piece: str, start: int = 0, stop: int = 0) -> torch.Tensor:
        named = {f"tower.{key}": value for key, value in weights.items()}
        return cast(torch.Tensor, functional_call(self._piece, named, (x, piece, start, stop), strict=False))

    def stem(self, weights: Mapping[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        """(B, tokens, width) hidden states entering block 0."""
        return self._run(weights, pixels, "stem")

    def blocks_between(self, weights: Mapping[str, torch.Tensor], hidden: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Hidden states after blocks [start, stop) (identity when start == stop)."""
        return self._run(weights, hidden, "blocks", start, stop) if stop > start else hidden

    def pooled(self, weights: Mapping[str, torch.Tensor], hidden: torch.Tensor) -> torch.Tensor:
        """(B, D) embedding of hidden states through the final norm, pooling and projection (the tower's output
        when ``hidden`` is the last block's)."""
        return self._run(weights, hidden, "final")

    def forward(self, weights: Mapping[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        """The whole tower: equal to ``functional_call(tower, weights, pixels)``."""
        return self.pooled(weights, self.blocks_between(weights, self.stem(weights, pixels), 0, self.blocks))
