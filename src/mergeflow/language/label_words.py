"""Classification with a causal LM: the class whose label word is most likely after the prompt (lm-eval-harness's
``multiple_choice``), deterministic and exact.

Tokenisation. The prompt is encoded as the tokenizer encodes text (``add_special_tokens=True``: a BOS where the
tokenizer adds one) and each label word separately, *with one leading space* and no special tokens: the prompt ends
at "Answer:" and the answer is the next word, " positive", which byte-level BPE (GPT-2, Qwen) spells with the space
folded into the word's first token. A prompt's trailing whitespace is moved onto the word, as lm-eval-harness does, so
"Answer: " scores the same tokens as "Answer:". The model sees exactly prompt ids + word ids: nothing is re-tokenised
across the boundary.

Scoring. If every label word is one token, one forward pass per input scores all classes at once from the next-token
distribution after the prompt (``log_softmax`` of the last prompt position). Otherwise each (input, label word)
sequence is scored exactly: the sum of the word's token log-probabilities, each given the prompt and the word's earlier
tokens, with all choices of a batch of inputs in one batched pass. Both are exact log-likelihoods (no length
normalisation; lm-eval-harness's ``acc``); the first is the second computed with one pass instead of C.

Batches are padded here, on the tokenizer's ``padding_side`` (or the one given): an attention mask hides the padding
and explicit position ids count only real tokens, so a row's scores do not depend on what it is batched with.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from mergeflow.errors import MergeflowError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Side = Literal["left", "right"]


def split_trailing_space(prompt: str, word: str) -> tuple[str, str]:
    """(prompt without trailing whitespace, word with one leading space, or the prompt's own trailing whitespace)."""
    stripped = prompt.rstrip()
    tail = prompt[len(stripped):]
    return stripped, (tail or " ") + word.strip()


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    ids = list(tokenizer(prompt.rstrip(), add_special_tokens=True)["input_ids"])
    if not ids:
        raise MergeflowError("an empty prompt: the first label-word token needs at least one token before it")
    return ids


def encode_words(tokenizer: PreTrainedTokenizerBase, words: Sequence[str], spacing: str = " ") -> list[list[int]]:
    """Each label word's token ids, spelled ``spacing + word`` (the leading-space convention) without special tokens."""
    if len(words) < 2:
        raise MergeflowError(f"need at least two label words to classify, got {list(words)}")
    encoded = [list(tokenizer(spacing + word.strip(), add_special_tokens=False)["input_ids"]) for word in words]
    for word, ids in zip(words, encoded, strict=True):
        if not ids:
            raise MergeflowError(f"label word {word!r} encodes to no tokens")
    if len({tuple(ids) for ids in encoded}) != len(encoded):
        raise MergeflowError(f"label words {list(words)} are not distinct after tokenisation")
    return encoded


def pad_batch(sequences: Sequence[Sequence[int]], side: Side, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, position ids, first column of each row's real tokens), padded on ``side``.

    Position ids run 0, 1, ... over a row's real tokens wherever the padding is (models that would count from the
    first column would otherwise shift a left-padded row); the pad id is irrelevant, as the mask hides it.
    """
    width = max(len(ids) for ids in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    starts = torch.zeros(len(sequences), dtype=torch.long)
    for row, tokens in enumerate(sequences):
        start = width - len(tokens) if side == "left" else 0
        ids[row, start:start + len(tokens)] = torch.tensor(list(tokens), dtype=torch.long)
        mask[row, start:start + len(tokens)] = 1
        starts[row] = start
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return ids, mask, positions, starts


def _accepts_logits_to_keep(model: nn.Module) -> bool:
    """transformers' causal LMs take ``logits_to_keep`` (project only some columns onto the vocabulary); other modules may not."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def _logits(model: nn.Module, sequences: Sequence[Sequence[int]], side: Side,
            spans: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(next-token logits at the columns the rows need, each row's first real column, column -> index into those
    logits). ``spans[row]`` = (offset from the row's first real token, count) of the columns that row reads. Only the needed columns are projected onto the vocabulary (``logits_to_keep``): a whole
    vocabulary at every column would cost batch x length x vocabulary (0.5 GB in bf16 for Qwen's 152k words and 8
    rows of 200 tokens); callers log-softmax only what they read."""
    ids, mask, positions, starts = pad_batch(sequences, side)
    needed = [torch.arange(int(start) + offset, int(start) + offset + count)
              for start, (offset, count) in zip(starts.tolist(), spans, strict=True)]
    columns = torch.unique(torch.cat(needed))  # sorted, distinct
    device = next(model.parameters()).device
    inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device), "use_cache": False}
    if _accepts_logits_to_keep(model):
        logits = model(**inputs, logits_to_keep=columns.to(device)).logits
    else:
        logits = model(**inputs).logits[:, columns.to(device)]
    lookup = torch.full((ids.shape[1],), -1, dtype=torch.long)
    lookup[columns] = torch.arange(len(columns))
    return logits, starts.to(logits.device), lookup.to(logits.device)


def score_label_words(model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], words: Sequence[str],
                      batch_size: int = 8, padding_side: Side | None = None) -> torch.Tensor:
    """(N prompts, C words) log-likelihoods log p(word_c | prompt_n), exact (see the module docstring).

    The model is put in eval mode for the call (dropout off, so scores repeat exactly) and restored afterwards.
    """
    if batch_size < 1:
        raise MergeflowError(f"batch_size must be >= 1, got {batch_size}")
    side: Side = padding_side or ("left" if getattr(tokenizer, "padding_side", "right") == "left" else "right")
    spacings = {split_trailing_space(prompt, "")[1] for prompt in prompts} or {" "}
    if len(spacings) != 1:
        raise MergeflowError(f"prompts end in different whitespace {sorted(spacings)}: the label words need one spelling")
    encoded_words = encode_words(tokenizer, words, spacings.pop())
    encoded_prompts = [encode_prompt(tokenizer, prompt) for prompt in prompts]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if all(len(ids) == 1 for ids in encoded_words):
                return _single_token_scores(model, encoded_prompts, [ids[0] for ids in encoded_words], batch_size, side)
            return _sequence_scores(model, encoded_prompts, encoded_words, batch_size, side)
    finally:
        model.train(training)


def _single_token_scores(model: nn.Module, prompts: list[list[int]], word_ids: list[int], batch_size: int, side: Side) -> torch.Tensor:
    """One forward pass per prompt (batched): the next-token log-probabilities after the prompt's last token, at each word's id."""
    rows = []
    for begin in range(0, len(prompts), batch_size):
        chunk = prompts[begin:begin + batch_size]
        logits, starts, lookup = _logits(model, chunk, side, [(len(ids) - 1, 1) for ids in chunk])
        last = lookup[starts + torch.tensor([len(ids) for ids in chunk], device=starts.device) - 1]
        rows.append(torch.log_softmax(logits[torch.arange(len(chunk), device=last.device), last].float(), dim=-1)[:, word_ids].cpu())
    return torch.cat(rows) if rows else torch.empty(0, len(word_ids))


def _sequence_scores(model: nn.Module, prompts: list[list[int]], words: list[list[int]], batch_size: int, side: Side) -> torch.Tensor:
    """sum_k log p(word token k | prompt, word tokens < k) for every (prompt, word), C sequences per prompt in a pass."""
    pairs = [(n, c) for n in range(len(prompts)) for c in range(len(words))]
    scores = torch.empty(len(prompts), len(words))
    step = max(1, batch_size) * len(words)  # batch_size prompts' worth of choices per pass
    for begin in range(0, len(pairs), step):
        chunk = pairs[begin:begin + step]
        sequences = [prompts[n] + words[c] for n, c in chunk]
        # column j - 1 predicts token j: from the prompt's last token to the word's second-to-last
        logits, starts, lookup = _logits(model, sequences, side, [(len(prompts[n]) - 1, len(words[c])) for n, c in chunk])
        for row, (n, c) in enumerate(chunk):
            first = int(starts[row]) + len(prompts[n])  # column of the word's first token; column j - 1 predicts j
            kept = lookup[first - 1:first - 1 + len(words[c])]
            predicting = torch.log_softmax(logits[row, kept].float(), dim=-1)
            scores[n, c] = predicting[torch.arange(len(words[c]), device=predicting.device), torch.tensor(words[c], device=predicting.device)].sum().cpu()
    return scores


def classify(model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], words: Sequence[str],
             batch_size: int = 8, padding_side: Side | None = None) -> torch.Tensor:
    """The predicted class per prompt: the index of the most likely label word (ties go to the first)."""
    return score_label_words(model, tokenizer, prompts, words, batch_size, padding_side).argmax(dim=1)
