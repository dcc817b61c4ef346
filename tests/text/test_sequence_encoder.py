"""The sequence-classifier split (models/sequence_encoder.py): ``head(encoder(ids))`` is the Hugging Face model's own
logits for RoBERTa (head on ``<s>``), GPT-2 (head on the last real token) and BERT (head on the pooler), with
right-padded rows; the encoder's keys are the checkpoint's body keys, the head's its head keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sequence_kit import tiny_base, tiny_expert

from mergeflow.errors import MergeflowError
from mergeflow.language.sequence_classifiers import load_sequence_classifier
from mergeflow.models.head import apply_head
from mergeflow.models.sequence_encoder import build_model, config_from_json, split_model
from mergeflow.models.text_backbone import load_text_tokenizer
from mergeflow.models.text_encoder import tokenize

SENTENCES = ["a fine film", "the plot is thin and the acting worse", "ok"]
PAIRS = ["it is good", "bad", "a long second sentence here"]


@pytest.mark.parametrize("family", ["roberta", "gpt2", "bert"])
def test_encoder_then_head_gives_the_model_logits(tmp_path: Path, family: str) -> None:
    tiny_base(tmp_path / "base", family)
    tiny_expert(tmp_path / "base", tmp_path / "expert", num_labels=3, seed=1)
    tokenizer = load_text_tokenizer(tmp_path / "base")
    ids = tokenize(tokenizer, SENTENCES, 64, pairs=PAIRS)
    assert (ids == tokenizer.pad_token_id).any(dim=1).all(), "every row is right-padded"
    model = load_sequence_classifier(tmp_path / "expert")
    mask = (ids != tokenizer.pad_token_id).long()
    extra = {"token_type_ids": torch.tensor([[0] * 64] * 3)} if family == "bert" else {}
    if family == "bert":  # BERT's pair segments: 1 after the first [SEP]
        sep = (ids == tokenizer.sep_token_id).long()
        extra["token_type_ids"] = ((sep.cumsum(1) - sep >= 1) & mask.bool()).long()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, **extra).logits
        encoder, head = split_model(model, tokenizer.pad_token_id, tokenizer.sep_token_id)
        got = apply_head(head, encoder(ids))
    assert got.shape == (3, 3)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    body_keys = {k for k in model.state_dict() if k.startswith(model.base_model_prefix + ".")}
    assert set(encoder.state_dict()) == body_keys
    assert set(head.state_dict()) | body_keys == set(model.state_dict())
    assert head.num_labels == 3


def test_a_stored_config_rebuilds_the_model_with_another_head(tmp_path: Path) -> None:
    model, _ = tiny_base(tmp_path / "base", "roberta")
    rebuilt = build_model(config_from_json(model.config.to_json_string(), num_labels=5), seed=0)
    assert rebuilt.config.num_labels == 5 and type(rebuilt).__name__ == "RobertaForSequenceClassification"
    assert rebuilt.config.hidden_size == model.config.hidden_size


def test_an_unsupported_model_type_is_refused(tmp_path: Path) -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=30, dim=16, n_layers=1, n_heads=2, hidden_dim=32))
    with pytest.raises(MergeflowError, match="model type 'distilbert'"):
        split_model(model, 0)
