"""Which state-dict keys the SVD methods decompose as matrices: each codebase has its own rule (docs/methods.md §1(b)).

A predicate takes (key, tensor) and says "decompose this one"; every other key is merged element-wise. The
element-wise methods (TIES, TALL, EMR) need no predicate: they act on every key they are given, so heads
(``classifier``, ``score``) are dropped by the caller before merging.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mergeflow.errors import MergeflowError

KeyPredicate = Callable[[str, torch.Tensor], bool]


def is_tsv_iso_matrix(key: str, tensor: torch.Tensor) -> bool:
    """TSV-M and Iso: every 2-D tensor except CLIP's ``text_projection`` (so ``positional_embedding`` and
    ``visual.proj`` are decomposed too)."""
    return tensor.ndim == 2 and "text_projection" not in key


# BERT-style encoders name their attention and MLP blocks ``attention.*`` and ``intermediate.dense`` / ``output.dense``
BERT_BLOCKS = ("attention.", "intermediate.dense", "output.dense")


def is_cart_matrix(key: str, tensor: torch.Tensor) -> bool:
    """CART and AdaRank: the name contains ``attn`` or ``mlp`` and neither ``ln`` nor ``bias`` (plain substring
    tests, as the authors write them for open_clip ViTs); the same blocks of BERT-style text encoders are named
    ``attention.*``, ``intermediate.dense`` and ``output.dense`` (their LayerNorms and embeddings stay out). We also
    require 2-D, since nothing else can be decomposed."""
    block = "attn" in key or "mlp" in key or any(part in key for part in BERT_BLOCKS)
    return tensor.ndim == 2 and block and not ("ln" in key or "bias" in key or "LayerNorm" in key)


def excluding(predicate: KeyPredicate, *substrings: str) -> KeyPredicate:
    """``predicate`` minus keys containing any of ``substrings``, e.g. heads of non-CLIP models (Iso's advice)."""

    def restricted(key: str, tensor: torch.Tensor) -> bool:
        return predicate(key, tensor) and not any(part in key for part in substrings)

    return restricted


MATRIX_PREDICATES: dict[str, KeyPredicate] = {
    "tsv_m": is_tsv_iso_matrix,
    "iso_c": is_tsv_iso_matrix,
    "iso_cts": is_tsv_iso_matrix,
    "cart": is_cart_matrix,
}


def matrix_predicate(method: str) -> KeyPredicate:
    """The authors' default predicate for an SVD method."""
    try:
        return MATRIX_PREDICATES[method]
    except KeyError:
        raise MergeflowError(f"{method!r} decomposes no matrices; SVD methods are {', '.join(MATRIX_PREDICATES)}") from None
