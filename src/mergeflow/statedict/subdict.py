"""Sub-dicts of a model's state dict by key prefix, e.g. the image encoder inside a full CLIP checkpoint."""

from __future__ import annotations

import torch

from mergeflow.errors import MergeflowError

VISUAL_PREFIX = "visual."


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries whose key starts with ``prefix``, with the prefix removed; an error if there are none."""
    selected = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    if not selected:
        raise MergeflowError(f"the state dict has no `{prefix}*` entries")
    return selected


def visual_state_dict(clip_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image encoder of a full open_clip CLIP state dict (keys as in ``clip.visual.state_dict()``)."""
    return strip_prefix(clip_state, VISUAL_PREFIX)
