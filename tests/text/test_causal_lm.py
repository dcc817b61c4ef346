"""A causal LM as the pipeline's encoder + head (mergeflow.language.causal_lm): the LM body read at the last prompt
token, then the LM head's rows at the one-token label words, gives exactly the label-word logits of the full model,
so its argmax is lm-eval-harness's label-word choice (``label_words.classify``); long prompts keep their end, and a
label word of several tokens is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sequence_kit import tiny_causal_lm

from mergeflow.data.sources.glue import glue_task
from mergeflow.errors import MergeflowError
from mergeflow.language.causal_lm import label_word_head, label_word_ids, load_causal_lm, prompt_token_ids
from mergeflow.language.label_words import classify
from mergeflow.language.sequence_classifiers import load_sequence_classifier
from mergeflow.models.head import linear_head
from mergeflow.models.sequence_encoder import split_model
from mergeflow.models.text_backbone import load_text_tokenizer

ROWS = [("a fine film", "it is good"), ("the plot is thin", "bad"), ("ok", "a long second sentence here and more")]


@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_body_then_label_word_rows_is_the_label_word_scorer(tmp_path: Path, task: str) -> None:
    tiny_causal_lm(tmp_path / "qwen")
    tokenizer = load_text_tokenizer(tmp_path / "qwen")
    lm = load_causal_lm(tmp_path / "qwen")
    glue = glue_task(task)
    prompts = [glue.render_texts(row[: len(glue.text_columns)]) for row in ROWS]
    ids = label_word_ids(tokenizer, glue.label_words)
    head = linear_head(label_word_head(lm, ids).state_dict())  # as the heads stage stores it and load_head reads it
    encoder, _ = split_model(load_sequence_classifier(tmp_path / "qwen", head_required=False), tokenizer.pad_token_id)
    token_ids, cut = prompt_token_ids(tokenizer, prompts, 160, tokenizer.pad_token_id)
    assert cut == 0 and (token_ids == tokenizer.pad_token_id).any(dim=1).all()
    with torch.no_grad():
        logits = head(encoder(token_ids))
        full = []
        for prompt in token_ids:  # the whole model, one unpadded prompt at a time
            real = prompt[prompt != tokenizer.pad_token_id][None]
            full.append(lm(input_ids=real).logits[0, -1, ids])
    torch.testing.assert_close(logits, torch.stack(full), atol=1e-5, rtol=1e-5)
    assert torch.equal(logits.argmax(dim=-1), classify(lm, tokenizer, prompts, glue.label_words))


def test_a_long_prompt_keeps_its_end_and_long_label_words_are_refused(tmp_path: Path) -> None:
    tiny_causal_lm(tmp_path / "qwen")
    tokenizer = load_text_tokenizer(tmp_path / "qwen")
    prompt = glue_task("sst2").render_texts(["a very long sentence " * 10])
    whole = tokenizer(prompt)["input_ids"]
    token_ids, cut = prompt_token_ids(tokenizer, [prompt, "short\nAnswer:"], 40, tokenizer.pad_token_id)
    assert cut == 1 and token_ids[0].tolist() == whole[-40:]
    with pytest.raises(MergeflowError, match="several tokens for this tokenizer"):
        label_word_ids(tokenizer, ["maybe", "yes"])
