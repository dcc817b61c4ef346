"""A task's frozen head as one type: a (classes, D) prototype/zero-shot matrix, or a model's own classification head.

The vision suites and the sentence-encoder text suites score logits = normalise(features) @ head^T, with the logit
scale folded into the rows (CLIP's zero-shot heads, the text prototypes). A Hugging Face sequence classifier
(RoBERTa, GPT-2: AdaRank's GLUE experts) has a trained head module of its own (``classifier.*``, ``score.*``) that
reads the encoder's pooled token unnormalised. Every consumer (evaluation, routed serving, adaptation's entropy, the
LoRA policies) calls ``apply_head``, so both kinds pass through the same code; a matrix stays a plain tensor, so the
matrix path computes exactly what it did before modules were allowed.
"""

from __future__ import annotations

from typing import TypeAlias

import torch
import torch.nn.functional as F
from torch import nn

Head: TypeAlias = torch.Tensor | nn.Module


def apply_head(head: Head, features: torch.Tensor) -> torch.Tensor:
    """(N, classes) logits of (N, D) encoder features."""
    if isinstance(head, torch.Tensor):
        return F.normalize(features, dim=-1) @ head.T
    return head(features)


def head_bytes(head: Head) -> int:
    """Bytes a head holds in memory (its matrix, or its module's parameters and buffers)."""
    if isinstance(head, torch.Tensor):
        return head.numel() * head.element_size()
    return sum(t.numel() * t.element_size() for t in (*head.parameters(), *head.buffers()))


def frozen_head(head: Head, device: torch.device) -> Head:
    """The head on ``device``, out of every autograd graph (a matrix detached, a module's parameters frozen)."""
    if isinstance(head, torch.Tensor):
        return head.detach().to(device)
    return head.to(device).requires_grad_(False)
