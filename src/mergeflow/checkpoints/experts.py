"""An expert brought instead of trained: a public checkpoint read into the base image tower's own keys.

Formats: a TALL-masks / open_clip ``.pt`` state dict (``torch.load(weights_only=True)``: a pickled module is refused
with the one-time conversion command), a ``.safetensors`` file (open_clip keys, e.g. from ``mergeflow
convert-checkpoint``), or a Hugging Face ``CLIPModel`` / ``CLIPVisionModel`` folder or hub id (``hf:<id>``). A
``CLIPVisionModel`` has no projection; FusionBench fine-tunes the vision model only, so the base's ``proj`` is used.
The result must fit the base tower exactly (every key, every shape): an expert of another architecture is an error.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mergeflow.checkpoints.clip_keys import OPEN_CLIP_PREFIX, OPEN_CLIP_PROJECTION
from mergeflow.checkpoints.sources import hf_clip_source
from mergeflow.errors import MergeflowError


def load_brought_expert(checkpoint: str, base: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """The image tower of ``checkpoint`` with the keys of ``base`` (the base tower's state, no ``visual.`` prefix)."""
    hf_source = hf_clip_source(checkpoint)
    if hf_source is not None:
        from mergeflow.checkpoints.hf_clip import hf_clip_vision_state

        vision = hf_clip_vision_state(hf_source)
    else:
        from mergeflow.checkpoints.open_clip_files import load_open_clip_vision

        vision = load_open_clip_vision(checkpoint)
    state = {key.removeprefix(OPEN_CLIP_PREFIX): value for key, value in vision.items()}
    if OPEN_CLIP_PROJECTION not in state and OPEN_CLIP_PROJECTION in base:
        state[OPEN_CLIP_PROJECTION] = base[OPEN_CLIP_PROJECTION].clone()  # a CLIPVisionModel: the base's projection
    missing = sorted(set(base) - set(state))
    unexpected = sorted(set(state) - set(base))
    if missing or unexpected:
        raise MergeflowError(f"{where}: {checkpoint} does not fit the base image tower (missing {missing[:5]}, unexpected "
                             f"{unexpected[:5]}); it is an expert of another architecture than backbone.model")
    wrong = [key for key in base if tuple(state[key].shape) != tuple(base[key].shape)]
    if wrong:
        key = wrong[0]
        raise MergeflowError(f"{where}: {checkpoint}: {key!r} has shape {tuple(state[key].shape)}, the base's is "
                             f"{tuple(base[key].shape)}; it is an expert of another architecture than backbone.model")
    return {key: state[key].to(base[key].dtype).contiguous() for key in base}
