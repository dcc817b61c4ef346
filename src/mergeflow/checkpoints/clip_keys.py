"""open_clip's CLIP image tower and Hugging Face's CLIP vision model are the same network under two key layouts.

The mapping is exact (tensors are renamed, q/k/v are fused or split, the projection is transposed), so a task vector
or a merge computed in one layout equals the other's after conversion. Both directions refuse keys they do not know and
report keys they miss: a vision weight is never dropped without the caller asking for it.

Layouts (``N`` = block index):

* open_clip (canonical in mergeflow): ``visual.{conv1.weight, class_embedding, positional_embedding, ln_pre.*,
  transformer.resblocks.N.{ln_1, attn.in_proj_weight/bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_post.*,
  proj}``, ``proj`` of shape (width, embed_dim).
* Hugging Face: ``embeddings.{patch_embedding.weight, class_embedding, position_embedding.weight}``,
  ``pre_layrnorm``, ``encoder.layers.N.{self_attn.{q,k,v,out}_proj, layer_norm1, layer_norm2, mlp.fc1, mlp.fc2}``,
  ``post_layernorm``, under ``vision_model.`` in a ``CLIPModel`` (and in a ``CLIPVisionModel`` written by
  transformers 4.x) or under no prefix (``CLIPVisionModel`` of transformers 5.x); ``visual_projection.weight`` of
  shape (embed_dim, width) exists only in ``CLIPModel`` / ``CLIPVisionModelWithProjection``.

A ``CLIPVisionModel`` has no projection: its output is the pooled, layer-normed class token (``width`` wide), not a
vector in CLIP's joint image-text space, so a zero-shot head from the text tower does not apply to it. Converted as is,
it gives an open_clip tower without ``visual.proj``; pass the base ``CLIPModel``'s ``visual_projection.weight`` as
``projection`` (FusionBench fine-tunes only the vision model, so the base's projection is the experts' projection).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from mergeflow.errors import MergeflowError

OPEN_CLIP_PREFIX = "visual."
HF_VISION_PREFIX = "vision_model."
HF_PROJECTION = "visual_projection.weight"
OPEN_CLIP_PROJECTION = "proj"
_HF_POSITION_IDS = "embeddings.position_ids"  # a buffer (0, 1, ..., P-1) that transformers 4.x wrote; not a weight

# open_clip name -> Hugging Face name, outside the blocks and inside one block (the fused q,k,v are apart)
_TOP = {
    "conv1.weight": "embeddings.patch_embedding.weight",
    "class_embedding": "embeddings.class_embedding",
    "positional_embedding": "embeddings.position_embedding.weight",
    "ln_pre.weight": "pre_layrnorm.weight",
    "ln_pre.bias": "pre_layrnorm.bias",
    "ln_post.weight": "post_layernorm.weight",
    "ln_post.bias": "post_layernorm.bias",
}
_BLOCK = {
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_FUSED = {
    "attn.in_proj_weight": tuple(f"self_attn.{part}_proj.weight" for part in "qkv"),
    "attn.in_proj_bias": tuple(f"self_attn.{part}_proj.bias" for part in "qkv"),
}
# first key component of the other towers: known, so skipped by name, never by "whatever is not vision"
OPEN_CLIP_TEXT_ROOTS = frozenset({"token_embedding", "positional_embedding", "ln_final", "text_projection", "logit_scale",
                                  "logit_bias", "attn_mask", "transformer", "text"})
HF_TEXT_ROOTS = frozenset({"text_model", "text_projection", "logit_scale"})


@dataclass(frozen=True)
class _Layout:
    """One side's vision key names, relative to its prefix, and the check that a key set is a whole tower."""

    name: str
    top: frozenset[str]
    optional: frozenset[str]
    blocks: str  # the block-list prefix, e.g. "transformer.resblocks."
    block: frozenset[str]

    def depth(self, keys: Iterable[str], where: str, shown: str = "") -> int:
        """The number of blocks; a MergeflowError naming unknown or missing keys (``shown`` prefixes them)."""
        pattern = re.compile(rf"{re.escape(self.blocks)}(\d+)\.(.+)")
        seen_top: set[str] = set()
        seen_blocks: dict[int, set[str]] = {}
        unknown = []
        for key in keys:
            match = pattern.fullmatch(key)
            if key in self.top or key in self.optional:
                seen_top.add(key)
            elif match and match.group(2) in self.block:
                seen_blocks.setdefault(int(match.group(1)), set()).add(match.group(2))
            else:
                unknown.append(key)
        if unknown:
            raise MergeflowError(f"{where}: keys that are not part of a {self.name} CLIP ViT image tower: "
                                 f"{_some(shown + key for key in unknown)} (mergeflow maps the plain ViT of OpenAI-style CLIP; "
                                 "layer scale, attentional pooling and other variants are not mapped)")
        depth = max(seen_blocks, default=-1) + 1
        missing = [shown + key for key in sorted(self.top - seen_top)]
        for index in range(depth):
            missing += [f"{shown}{self.blocks}{index}.{name}" for name in sorted(self.block - seen_blocks.get(index, set()))]
        if missing or depth == 0:
            raise MergeflowError(f"{where}: an incomplete {self.name} CLIP image tower: missing {_some(missing) if missing else 'every block'}")
        return depth


OPEN_CLIP = _Layout("open_clip", frozenset(_TOP), frozenset({OPEN_CLIP_PROJECTION}), "transformer.resblocks.",
                    frozenset(_BLOCK) | frozenset(_FUSED))
HUGGING_FACE = _Layout("Hugging Face", frozenset(_TOP.values()), frozenset(), "encoder.layers.",
                       frozenset(_BLOCK.values()) | frozenset(name for names in _FUSED.values() for name in names))


def _some(keys: Iterable[str], count: int = 5) -> str:
    keys = list(keys)
    more = f" and {len(keys) - count} more" if len(keys) > count else ""
    return f"{keys[:count]}{more}"


def _root(key: str) -> str:
    return key.split(".", 1)[0]


def _open_clip_tower(state: Mapping[str, torch.Tensor], where: str) -> tuple[dict[str, torch.Tensor], int]:
    vision = {key: value for key, value in state.items() if key.startswith(OPEN_CLIP_PREFIX)}
    other = [key for key in state if not key.startswith(OPEN_CLIP_PREFIX) and _root(key) not in OPEN_CLIP_TEXT_ROOTS]
    if other:
        raise MergeflowError(f"{where}: keys of neither open_clip tower: {_some(other)} (expected `visual.*` image-tower keys"
                             " and, optionally, text-tower keys)")
    return vision, OPEN_CLIP.depth((key.removeprefix(OPEN_CLIP_PREFIX) for key in vision), where, OPEN_CLIP_PREFIX)


def open_clip_vision(state: Mapping[str, torch.Tensor], where: str = "the state dict") -> dict[str, torch.Tensor]:
    """The ``visual.*`` entries of an open_clip CLIP state dict, checked to be one whole ViT image tower.

    Text-tower entries (``token_embedding``, ``transformer.*``, ``logit_scale``, ...) are skipped by name; any other
    key is an error, so a checkpoint of another layout is never mistaken for an empty or partial tower.
    """
    return _open_clip_tower(state, where)[0]


def hf_vision_prefix(state: Mapping[str, torch.Tensor], where: str = "the state dict") -> str:
    """``"vision_model."`` (``CLIPModel``, transformers 4.x ``CLIPVisionModel``) or ``""`` (transformers 5.x
    ``CLIPVisionModel``): where the vision model's keys are in this Hugging Face state dict."""
    marker = _TOP["class_embedding"]
    if HF_VISION_PREFIX + marker in state:
        return HF_VISION_PREFIX
    if marker in state:
        return ""
    raise MergeflowError(f"{where}: not a Hugging Face CLIP vision model (no `{HF_VISION_PREFIX}{marker}` or `{marker}`); "
                         f"its first keys are {_some(state)}")


def _split(fused: torch.Tensor, key: str, where: str) -> tuple[torch.Tensor, ...]:
    if fused.shape[0] % 3:
        raise MergeflowError(f"{where}: {key!r} has {fused.shape[0]} rows, not three equal q, k, v parts")
    return tuple(part.clone() for part in fused.chunk(3))  # clones: three views of one storage cannot be saved apart


def open_clip_to_hf(state: Mapping[str, torch.Tensor], *, prefix: str = HF_VISION_PREFIX, projection: bool = True,
                    where: str = "the state dict") -> dict[str, torch.Tensor]:
    """Hugging Face vision keys of an open_clip CLIP (or image tower) state dict with ``visual.*`` keys.

    ``prefix="vision_model."`` with ``projection=True`` gives the vision half of a ``CLIPModel`` (or a
    ``CLIPVisionModelWithProjection``); ``projection=False`` leaves ``visual.proj`` out, as a ``CLIPVisionModel`` has
    none (its output is then the ``width``-wide pooled feature, not the joint embedding). Text entries are skipped.
    """
    vision, depth = _open_clip_tower(state, where)
    out = {prefix + hf: vision[OPEN_CLIP_PREFIX + ours] for ours, hf in _TOP.items()}
    for index in range(depth):
        ours, theirs = f"{OPEN_CLIP_PREFIX}transformer.resblocks.{index}.", f"{prefix}encoder.layers.{index}."
        for name, names in _FUSED.items():
            out.update(zip((theirs + part for part in names), _split(vision[ours + name], ours + name, where), strict=True))
        out.update({theirs + hf: vision[ours + name] for name, hf in _BLOCK.items()})
    proj = vision.get(OPEN_CLIP_PREFIX + OPEN_CLIP_PROJECTION)
    if projection:
        if proj is None:
            raise MergeflowError(f"{where}: has no `visual.proj`, so there is no `{HF_PROJECTION}` to write; "
                                 "convert with projection=False (a CLIPVisionModel)")
        out[HF_PROJECTION] = proj.t().contiguous()
    return out


def hf_to_open_clip(state: Mapping[str, torch.Tensor], *, projection: torch.Tensor | None = None,
                    where: str = "the state dict") -> dict[str, torch.Tensor]:
    """open_clip ``visual.*`` keys of a Hugging Face ``CLIPModel`` / ``CLIPVisionModel`` state dict.

    ``visual.proj`` is the transposed ``visual_projection.weight``: the state's own, or ``projection`` (a base
    ``CLIPModel``'s ``visual_projection.weight``, for a ``CLIPVisionModel`` that has none). Without either the result
    has no ``visual.proj`` (see the module docstring). Text entries are skipped; any other key is an error.
    """
    prefix = hf_vision_prefix(state, where)
    vision: dict[str, torch.Tensor] = {}
    other = []
    for key, value in state.items():
        if key == HF_PROJECTION or _root(key) in HF_TEXT_ROOTS:
            continue
        if key.startswith(prefix):
            vision[key.removeprefix(prefix)] = value
        else:
            other.append(key)
    if other:
        raise MergeflowError(f"{where}: keys of neither Hugging Face CLIP tower: {_some(other)}")
    vision.pop(_HF_POSITION_IDS, None)
    depth = HUGGING_FACE.depth(vision, where, prefix)
    out = {OPEN_CLIP_PREFIX + ours: vision[hf] for ours, hf in _TOP.items()}
    for index in range(depth):
        ours, theirs = f"{OPEN_CLIP_PREFIX}transformer.resblocks.{index}.", f"encoder.layers.{index}."
        for name, names in _FUSED.items():
            parts = [vision[theirs + part] for part in names]
            if len({tuple(part.shape) for part in parts}) != 1:
                raise MergeflowError(f"{where}: q, k and v of {prefix}{theirs}self_attn differ in shape; they cannot be fused")
            out[ours + name] = torch.cat(parts)
        out.update({ours + name: vision[theirs + hf] for name, hf in _BLOCK.items()})
    own = state.get(HF_PROJECTION)
    if own is not None and projection is not None:
        raise MergeflowError(f"{where}: has its own `{HF_PROJECTION}`; do not pass another projection")
    chosen = own if own is not None else projection
    if chosen is not None:
        width = out[OPEN_CLIP_PREFIX + "class_embedding"].shape[0]
        if chosen.dim() != 2 or chosen.shape[1] != width:
            raise MergeflowError(f"{where}: a projection of shape {tuple(chosen.shape)} does not fit a {width}-wide tower "
                                 f"(expected (embed_dim, {width}), as `{HF_PROJECTION}` is stored)")
        out[OPEN_CLIP_PREFIX + OPEN_CLIP_PROJECTION] = chosen.t().contiguous()
    return out
