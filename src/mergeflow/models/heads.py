"""Frozen zero-shot classification heads from class-name prompts, as the merging papers build them.

A head is a (classes, dim) matrix: the mean L2-normalised text embedding of each class's prompts,
renormalised and multiplied by CLIP's learned logit scale. It is computed once and never trained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mergeflow.models.clip_parts import encode_text, logit_scale


@torch.no_grad()
def zero_shot_head(clip: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], class_names: Sequence[str],
                   templates: Sequence[str]) -> torch.Tensor:
    """Zero-shot head for one task: rows are classes, scaled by ``clip.logit_scale.exp()``."""
    if not class_names or not templates:
        raise ValueError("a head needs at least one class name and one template")
    clip.eval()
    rows = []
    for name in class_names:
        tokens = tokenizer([template.format(name) for template in templates])
        embeddings = F.normalize(encode_text(clip, tokens), dim=-1)
        rows.append(F.normalize(embeddings.mean(dim=0), dim=-1))
    return torch.stack(rows) * logit_scale(clip).exp()
