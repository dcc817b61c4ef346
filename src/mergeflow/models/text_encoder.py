"""A Hugging Face encoder as a sentence embedder over fixed-length token-id tensors (masked mean pooling).

Text splits are tokenised once into an (N, L) int64 tensor, right-padded with the tokenizer's pad id, so that
training, evaluation and routing index one tensor exactly as the vision code indexes uint8 images; the attention
mask is recovered as ``ids != pad id`` (BERT-style tokenizers never emit the pad id for real text). Masked mean pooling
of the last hidden states followed by L2 normalisation is how sentence-transformers embeds with all-MiniLM-L6-v2.

The encoder's ``state_dict()`` (keys ``transformer.embeddings.*``, ``transformer.encoder.layer.{i}.*``) is what
experts, task vectors and merges are made of, as ``visual.state_dict()`` is for the image tasks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from mergeflow.errors import MergeflowError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_MAX_TOKENS = 32


def pair_segments(input_ids: torch.Tensor, mask: torch.Tensor, sep_token_id: int) -> torch.Tensor:
    """(N, L) segment ids: 0 up to and including the first separator, 1 after it (padding 0)."""
    separators = (input_ids == sep_token_id).long()
    return (((separators.cumsum(dim=1) - separators) >= 1) & mask).long()


class TextEncoder(nn.Module):
    """(N, L) token ids [+ attention mask] -> (N, D) masked-mean embeddings (unnormalised, like ``encode_image``).

    Pair encodings ([CLS] A [SEP] B [SEP]) get BERT's segment ids back from the ids alone: every token after the
    first separator is segment 1. Single sentences are all segment 0 (the model's default), and models without
    segment embeddings (RoBERTa-style, ``type_vocab_size`` 1) are fed no segment ids at all."""

    def __init__(self, transformer: nn.Module, pad_token_id: int, sep_token_id: int | None = None):
        super().__init__()
        self.transformer = transformer
        self.pad_token_id = int(pad_token_id)
        config = getattr(transformer, "config", None)
        uses_segments = sep_token_id is not None and getattr(config, "type_vocab_size", 1) >= 2
        self.sep_token_id = int(sep_token_id) if uses_segments and sep_token_id is not None else None

    def segment_ids(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """BERT's segment ids (``pair_segments``); None without segments."""
        return None if self.sep_token_id is None else pair_segments(input_ids, mask, self.sep_token_id)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.ndim != 2:
            raise MergeflowError(f"text encoder: token ids must be (N, L), got shape {tuple(input_ids.shape)}")
        mask = (input_ids != self.pad_token_id) if attention_mask is None else attention_mask.bool()
        # Drop trailing columns that are padding in every row: attention masks them anyway, and short
        # sentences in a 32-token tensor would otherwise pay for the full length.
        used = torch.nonzero(mask.any(dim=0))
        length = int(used.max()) + 1 if len(used) else 1
        input_ids, mask = input_ids[:, :length], mask[:, :length]
        segments = self.segment_ids(input_ids, mask)
        extra = {} if segments is None else {"token_type_ids": segments}
        hidden = self.transformer(input_ids=input_ids, attention_mask=mask.long(), **extra).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def load_text_encoder(source: str | os.PathLike[str] | None = None) -> tuple[TextEncoder, PreTrainedTokenizerBase]:
    """The pretrained encoder (eval mode) and its tokenizer; ``source`` as in ``text_backbone.load_text_backbone``."""
    from mergeflow.models.text_backbone import load_text_backbone

    model, tokenizer = load_text_backbone(source)
    return TextEncoder(model, tokenizer.pad_token_id, tokenizer.sep_token_id).eval(), tokenizer


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS,
             pairs: Sequence[str] | None = None) -> torch.Tensor:
    """(N, max_tokens) int64 token ids, right-padded; longer texts are truncated (their last token stays [SEP]).

    With ``pairs``, row i is the tokenizer's pair encoding of (texts[i], pairs[i]) ([CLS] A [SEP] B [SEP] for BERT),
    truncating the longer of the two first, as GLUE models are fed."""
    if isinstance(texts, str) or isinstance(pairs, str):
        raise MergeflowError("tokenize: pass a list of texts, not one string")
    if pairs is not None and len(pairs) != len(texts):
        raise MergeflowError(f"tokenize: {len(texts)} first sentences but {len(pairs)} second ones")
    if max_tokens < 2:
        raise MergeflowError(f"tokenize: max_tokens must be at least 2 ([CLS] and [SEP]), got {max_tokens}")
    if tokenizer.padding_side != "right":
        raise MergeflowError(f"tokenize: the tokenizer pads on the {tokenizer.padding_side}; "
                             "the text encoder expects right padding")
    if not texts:
        return torch.empty(0, max_tokens, dtype=torch.int64)
    encoded = tokenizer(list(texts), list(pairs) if pairs is not None else None, padding="max_length",
                        truncation="longest_first" if pairs is not None else True, max_length=max_tokens,
                        return_attention_mask=False, return_token_type_ids=False, return_tensors="pt")
    return encoded["input_ids"].to(torch.int64)


def token_lengths(token_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Number of real tokens per row (special tokens included)."""
    return (token_ids != pad_token_id).sum(dim=1)


_BERT_MLP = re.compile(r"(.*\.)?layer\.(\d+)\.(intermediate|output)\.dense$")


def mlp_lora_targets(encoder: nn.Module) -> tuple[str, ...]:
    """peft ``target_modules`` for the MLP linears of a BERT-style encoder (``layer.{i}.intermediate.dense``/``.output.dense``).

    Plain ``"output.dense"`` would also match each attention block's ``attention.output.dense``; TR-Merging puts text
    LoRA in the MLP only, so the layer index is part of every target.
    """
    targets = sorted({match.group(0)[len(match.group(1) or ""):] for name, _ in encoder.named_modules()
                      if (match := _BERT_MLP.match(name))})
    if not targets:
        raise MergeflowError("lora.adapter.targets [mlp]: this encoder has no BERT-style `layer.{i}.intermediate.dense` "
                             "MLP linears (GPT-2's MLPs are Conv1D, which the LoRA methods here do not serve); set "
                             "lora.methods: [] and reproduce the other stages (`dvc repro results report`)")
    return tuple(targets)
