"""A text classifier = sentence encoder + a frozen head, fed with token-id tensors: the text twin of ``ImageClassifier``.

Only ``encoder`` holds parameters, so fine-tuning, task vectors and merging see ``encoder.state_dict()`` exactly as
they see the image encoder's; the head is a non-persistent buffer that never trains and is never merged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mergeflow.errors import MergeflowError


class TextClassifier(nn.Module):
    """logits = normalise(encoder(token ids)) @ head.T, with the logit scale folded into the head's rows."""

    head: torch.Tensor

    def __init__(self, encoder: nn.Module, head: torch.Tensor):
        super().__init__()
        if head.ndim != 2:
            raise MergeflowError(f"a text head must be (classes, dim), got shape {tuple(head.shape)}")
        self.encoder = encoder
        self.register_buffer("head", head.detach().clone(), persistent=False)

    def features(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Unnormalised sentence embeddings of (N, L) token ids."""
        return self.encoder(token_ids)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.features(token_ids), dim=-1) @ self.head.T
