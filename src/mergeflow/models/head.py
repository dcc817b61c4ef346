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

from mergeflow.errors import MergeflowError

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


def linear_head(state: dict[str, torch.Tensor]) -> nn.Linear:
    """A stored linear head (``weight``, optional ``bias``: a causal LM's label-word rows,
    ``language.causal_lm.label_word_head``) back as its frozen layer."""
    if "weight" not in state or state["weight"].ndim != 2 or set(state) - {"weight", "bias"}:
        raise MergeflowError(f"a label-word head holds `weight` (classes, D) and optionally `bias`, got {sorted(state)}")
    classes, width = state["weight"].shape
    head = nn.Linear(int(width), int(classes), bias="bias" in state, dtype=state["weight"].dtype)
    head.load_state_dict(state, strict=True)
    return head.eval().requires_grad_(False)
