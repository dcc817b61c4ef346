"""A text classifier = encoder + a frozen head, fed with token-id tensors: the text twin of ``ImageClassifier``.

Only ``encoder`` is trained, so fine-tuning, task vectors and merging see ``encoder.state_dict()`` exactly as they
see the image encoder's. The head never trains and is never merged: a (classes, D) prototype matrix (a
non-persistent buffer), or a sequence classifier's own head module (``models.sequence_encoder``; its parameters are
frozen and it is not part of ``encoder``).
"""

from __future__ import annotations

import torch
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.models.head import Head, apply_head


class TextClassifier(nn.Module):
    """logits = head(encoder(token ids)): normalise(features) @ head.T for a matrix (logit scale in its rows)."""

    head: Head

    def __init__(self, encoder: nn.Module, head: Head):
        super().__init__()
        self.encoder = encoder
        if isinstance(head, torch.Tensor):
            if head.ndim != 2:
                raise MergeflowError(f"a text head must be (classes, dim), got shape {tuple(head.shape)}")
            self.register_buffer("head", head.detach().clone(), persistent=False)
        else:
            self.head = head.requires_grad_(False)

    def features(self, token_ids: torch.Tensor) -> torch.Tensor:
        """The encoder's features of (N, L) token ids (sentence embeddings, or a sequence classifier's pooled token)."""
        return self.encoder(token_ids)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        return apply_head(self.head, self.features(token_ids))
