"""TR-Merging's router encoder: a separate small sentence-embedding model that scores inputs, not the merged model.

The paper routes language inputs with BGE-small-en-v1.5 (vision with CLIP ViT-B/16). ``lora.tr.router_encoder``
names it: ``base`` scores with the suite's own pretrained encoder (no second model), anything else is a sentence
embedder loaded like a text backbone (``package:NAME``, a local folder or a Hugging Face id). Inputs arrive as the
suite tokenizer's (N, L) ids; when the router has another vocabulary they are decoded (a pair at its first
separator) and re-encoded with the router's tokenizer, so any sentence embedder can route any text suite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F

from mergeflow.errors import MergeflowError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from mergeflow.models.text_encoder import TextEncoder

BASE = "base"


class RouterEmbedder:
    """(N, L) suite token ids -> (N, D) L2-normalised embeddings of the router encoder (eval mode, no gradient)."""

    def __init__(self, encoder: TextEncoder, tokenizer: PreTrainedTokenizerBase, suite_tokenizer: PreTrainedTokenizerBase,
                 max_tokens: int) -> None:
        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        self.suite_tokenizer = suite_tokenizer
        self.max_tokens = int(max_tokens)
        self.same_vocabulary = tokenizer.get_vocab() == suite_tokenizer.get_vocab()

    def parameter_bytes(self) -> int:
        """What the router model adds to the server's memory."""
        return sum(p.numel() * p.element_size() for p in self.encoder.parameters())

    def _retokenize(self, token_ids: torch.Tensor) -> torch.Tensor:
        from mergeflow.models.text_encoder import tokenize

        sep, pad = self.suite_tokenizer.sep_token_id, self.suite_tokenizer.pad_token_id
        firsts: list[str] = []
        seconds: list[str] = []
        for row in token_ids.tolist():
            row = [token for token in row if token != pad]
            cut = row.index(sep) if sep in row else len(row)
            # one sequence of ids decodes to one string (transformers types decode as str | list[str])
            firsts.append(cast(str, self.suite_tokenizer.decode(row[:cut], skip_special_tokens=True)))
            seconds.append(cast(str, self.suite_tokenizer.decode(row[cut:], skip_special_tokens=True)))
        paired = any(seconds)
        return tokenize(self.tokenizer, firsts, self.max_tokens, pairs=seconds if paired else None)

    @torch.no_grad()
    def __call__(self, token_ids: torch.Tensor) -> torch.Tensor:
        ids = token_ids if self.same_vocabulary else self._retokenize(token_ids)
        return F.normalize(self.encoder(ids).float(), dim=-1)


def load_router_embedder(source: str, suite_kind: str, suite_source: str | None, max_tokens: int | None) -> RouterEmbedder | None:
    """None for ``base`` (score with the suite's encoder); otherwise the named sentence embedder, text suites only."""
    if source == BASE:
        return None
    if suite_kind != "text" or max_tokens is None:
        raise MergeflowError(f"lora.tr.router_encoder {source!r}: a separate router encoder is a sentence-embedding model "
                             "and routes text suites only; use `base` for a vision suite")
    from mergeflow.models.text_backbone import load_text_tokenizer
    from mergeflow.models.text_encoder import load_text_encoder

    encoder, tokenizer = load_text_encoder(source)
    suite_tokenizer = load_text_tokenizer(suite_source)
    return RouterEmbedder(encoder, tokenizer, suite_tokenizer, max_tokens)
