"""Where a backbone's sub-layers are: the MLPs WEMoE upscales, and the ordered attention/MLP sub-layers whose keys
MoW-Merging makes per-input. Two families are known: open_clip's ViT (``transformer.resblocks.N.{attn,mlp}``) and
Hugging Face BERT-style encoders (``encoder.layer.N.{attention,intermediate,output}``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

from mergeflow.errors import MergeflowError

_SUBLAYER_PATTERNS = (
    (re.compile(r"(?:^|\.)resblocks\.(\d+)\.(ln_1|attn|ls_1)\."), 0),
    (re.compile(r"(?:^|\.)resblocks\.(\d+)\.(ln_2|mlp|ls_2)\."), 1),
    (re.compile(r"(?:^|\.)layer\.(\d+)\.attention\."), 0),
    (re.compile(r"(?:^|\.)layer\.(\d+)\.(intermediate|output)\."), 1),
)


def mlp_linears(encoder: nn.Module) -> list[tuple[str, str]]:
    """(first, second) linear-layer names of every transformer MLP, in depth order."""
    modules = dict(encoder.named_modules())
    pairs = []
    for name, module in modules.items():
        if name.endswith(".mlp") and isinstance(getattr(module, "c_fc", None), nn.Linear) and isinstance(getattr(module, "c_proj", None), nn.Linear):
            pairs.append((f"{name}.c_fc", f"{name}.c_proj"))
        elif re.search(r"(?:^|\.)layer\.\d+\.intermediate$", name) and isinstance(getattr(module, "dense", None), nn.Linear):
            second = name.removesuffix("intermediate") + "output.dense"
            if isinstance(modules.get(second), nn.Linear):
                pairs.append((f"{name}.dense", second))
    if not pairs:
        raise MergeflowError("found no transformer MLP (open_clip resblocks.N.mlp or BERT layer.N.intermediate/output) in this encoder")
    return pairs


def last_sublayer_keys(keys: Iterable[str], count: int) -> list[str]:
    """The state-dict keys of the last ``count`` sub-layers (attention and MLP count one each), in key order."""
    keys = list(keys)
    sublayers: dict[tuple[int, int], list[str]] = {}
    for key in keys:
        for pattern, kind in _SUBLAYER_PATTERNS:
            match = pattern.search(key)
            if match:
                sublayers.setdefault((int(match.group(1)), kind), []).append(key)
                break
    if not sublayers:
        raise MergeflowError("found no transformer sub-layers (open_clip resblocks.N or BERT layer.N) among the task vectors' keys")
    if count < 1 or count > len(sublayers):
        raise MergeflowError(f"sublayers must be in 1..{len(sublayers)} (this encoder's attention + MLP sub-layers), got {count}")
    chosen = set().union(*(sublayers[key] for key in sorted(sublayers)[-count:]))
    return [key for key in keys if key in chosen]
