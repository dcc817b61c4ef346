"""Frozen heads for text tasks: class prototypes from the pretrained encoder (nearest class mean), times a logit scale.

The vision suites get their heads from CLIP's text tower (class-name prompts embedded next to the images). A sentence
embedder like MiniLM has no such second tower: class names ("positive", "place", "true") embed far from the inputs
they label, so prompt heads start near chance on most tasks and say more about wording than about the encoder.
Instead each row is the L2-normalised mean pretrained embedding of (the first ``per_class``) training examples of
the class, i.e. the nearest-class-mean classifier on pretrained features. Like the CLIP heads it comes from the
pretrained model alone (no gradient step), is computed once per task, and stays frozen while experts fine-tune and
while merged models are evaluated, so every method is scored with the same head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mergeflow.errors import MergeflowError

# CLIP's learned logit scale ends at 100 (its clamp); the same temperature keeps text and vision losses comparable.
PROTOTYPE_SCALE = 100.0


@torch.no_grad()
def prototype_head(encoder: nn.Module, token_ids: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   per_class: int = 64, scale: float = PROTOTYPE_SCALE, batch_size: int = 64) -> torch.Tensor:
    """(classes, dim) head: row c = scale * normalise(mean of normalised embeddings of the first ``per_class`` examples of c).

    Taking the first examples in split order (already shuffled by the seeded generator) needs no random draw and keeps
    the cost at ``num_classes * per_class`` forward passes.
    """
    if len(token_ids) != len(labels):
        raise MergeflowError(f"prototype_head: {len(token_ids)} inputs but {len(labels)} labels")
    if per_class < 1 or scale <= 0:
        raise MergeflowError(f"prototype_head: per_class must be >= 1 and scale > 0, got {per_class} and {scale}")
    chosen = []
    for label in range(num_classes):
        members = torch.nonzero(labels == label).flatten()[:per_class]
        if len(members) == 0:
            raise MergeflowError(f"prototype_head: class {label} has no examples; every class needs at least one")
        chosen.append(members)
    index = torch.cat(chosen)
    was_training = encoder.training
    encoder.eval()
    embeddings = torch.cat([F.normalize(encoder(token_ids[index[i : i + batch_size]]).float(), dim=-1)
                            for i in range(0, len(index), batch_size)])
    encoder.train(was_training)
    rows, start = [], 0
    for members in chosen:
        rows.append(F.normalize(embeddings[start : start + len(members)].mean(dim=0), dim=-1))
        start += len(members)
    return torch.stack(rows) * scale
