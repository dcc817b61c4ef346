"""A causal LM as a classifier in the pipeline (``backbone.architecture: causal_lm``, TR-Merging's Qwen2.5 setting).

lm-eval-harness scores a GLUE row by the log-likelihood of each label word after the task's prompt
(``label_words.py``). When every label word is one token, that is one forward pass: log p(word_c | prompt) =
log_softmax(W h)[id_c], with h the last prompt token's final hidden state and W the LM head. The softmax's
normaliser is the same for every class, so the argmax over classes is the argmax of the label words' *logits*
w_c . h (+ b_c): a linear head of C rows of the LM head. The pipeline's encoder is the LM's body read at the last
real token (``models.sequence_encoder``, right padding) and its head is that C-row linear layer, frozen; a test
checks that the pipeline's predictions are the exact scorer's (``label_words.classify``). Multi-token label words
need one pass per class and are refused here (the exact scorer handles them outside the pipeline).

Prompts are tokenised as ``label_words.encode_prompt`` does (the tokenizer's own special tokens, trailing whitespace
moved onto the label word) and right-padded to ``max_tokens``; a longer prompt keeps its *last* ``max_tokens``
tokens, so the question and "Answer:" the label word follows are never cut (the start of a long passage is).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.language.label_words import encode_prompt, encode_words
from mergeflow.language.sequence_classifiers import from_pretrained_with_info, resolve_source

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_causal_lm(source: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """``AutoModelForCausalLM`` from a folder or hub id, eval mode; a weight missing from the checkpoint is an error."""
    from transformers import AutoModelForCausalLM

    where = resolve_source(source)
    model, info = from_pretrained_with_info(AutoModelForCausalLM, where, dtype, "causal LM")
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise MergeflowError(f"causal LM {where!r}: the checkpoint lacks {missing[:5]}; those weights would stay random")
    return model.eval()


def label_word_ids(tokenizer: PreTrainedTokenizerBase, words: Sequence[str]) -> list[int]:
    """Each label word's token id, spelled with one leading space; a word of several tokens is refused."""
    encoded = encode_words(tokenizer, words)
    long = {word: len(ids) for word, ids in zip(words, encoded, strict=True) if len(ids) != 1}
    if long:
        raise MergeflowError(f"label words {long} are several tokens for this tokenizer (count shown); the pipeline's "
                             "one-pass head needs one-token words (score others with mergeflow.language.label_words)")
    return [ids[0] for ids in encoded]


def label_word_head(model: PreTrainedModel, token_ids: Sequence[int]) -> nn.Linear:
    """The C rows of the LM head at ``token_ids`` as a frozen linear layer (with the LM head's bias, if it has one)."""
    output = model.get_output_embeddings()
    if not isinstance(output, nn.Linear):
        raise MergeflowError(f"{type(model).__name__}: its LM head is a {type(output).__name__}, not a linear layer")
    rows = torch.tensor(list(token_ids), dtype=torch.long)
    head = nn.Linear(output.in_features, len(rows), bias=output.bias is not None, dtype=output.weight.dtype)
    with torch.no_grad():
        head.weight.copy_(output.weight[rows])
        if output.bias is not None and head.bias is not None:
            head.bias.copy_(output.bias[rows])
    return head.eval().requires_grad_(False)


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_tokens: int,
                     pad_token_id: int) -> tuple[torch.Tensor, int]:
    """((N, max_tokens) right-padded prompt ids, how many prompts lost their start to ``max_tokens``)."""
    ids = torch.full((len(prompts), max_tokens), pad_token_id, dtype=torch.long)
    cut = 0
    for row, prompt in enumerate(prompts):
        tokens = encode_prompt(tokenizer, prompt)
        if pad_token_id in tokens:
            raise MergeflowError(f"prompt {row} holds the padding token {pad_token_id}: the encoder would read it as padding")
        if len(tokens) > max_tokens:
            tokens, cut = tokens[-max_tokens:], cut + 1
        ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return ids, cut
