"""Tokenising to fixed-length id tensors, masked mean pooling, the frozen-head classifier and its prototype heads."""

from __future__ import annotations

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.models.text_classifier import TextClassifier
from mergeflow.models.text_encoder import mlp_lora_targets, token_lengths, tokenize
from mergeflow.models.text_heads import prototype_head

TEXTS = ["Turn the kitchen lights off.", "Who designed the Eiffel Tower?", "It broke after a week. Avoid."]


def test_tokens_are_fixed_length_right_padded_int64(minilm) -> None:  # type: ignore[no-untyped-def]
    _, tokenizer = minilm
    ids = tokenize(tokenizer, TEXTS, 32)
    assert ids.shape == (3, 32) and ids.dtype == torch.int64
    lengths = token_lengths(ids, tokenizer.pad_token_id)
    for row, length in zip(ids, lengths.tolist(), strict=True):
        assert row[0] == tokenizer.cls_token_id and row[length - 1] == tokenizer.sep_token_id
        assert (row[length:] == tokenizer.pad_token_id).all()
    long = tokenize(tokenizer, ["word " * 100], 16)
    assert long.shape == (1, 16) and long[0, -1] == tokenizer.sep_token_id
    assert tokenize(tokenizer, [], 32).shape == (0, 32)
    with pytest.raises(MergeflowError, match="list of texts"):
        tokenize(tokenizer, "one string", 32)  # type: ignore[arg-type]
    with pytest.raises(MergeflowError, match="at least 2"):
        tokenize(tokenizer, TEXTS, 1)


def test_padding_length_and_an_explicit_mask_do_not_change_embeddings(minilm) -> None:  # type: ignore[no-untyped-def]
    encoder, tokenizer = minilm
    short, long = tokenize(tokenizer, TEXTS, 32), tokenize(tokenizer, TEXTS, 64)
    with torch.no_grad():
        a, b = encoder(short), encoder(long)
        c = encoder(short, attention_mask=short != tokenizer.pad_token_id)
    assert a.shape == (3, 384)
    assert torch.allclose(a, b, atol=1e-5) and torch.equal(a, c)
    with pytest.raises(MergeflowError, match=r"\(N, L\)"):
        encoder(short[0])


def test_classifier_has_a_frozen_head_and_only_encoder_weights(minilm) -> None:  # type: ignore[no-untyped-def]
    encoder, tokenizer = minilm
    ids = tokenize(tokenizer, TEXTS * 2, 32)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    head = prototype_head(encoder, ids, labels, 3, per_class=2)
    assert head.shape == (3, 384) and torch.allclose(head.norm(dim=-1), torch.full((3,), 100.0))
    classifier = TextClassifier(encoder, head)
    with torch.no_grad():
        logits = classifier(ids)
    assert logits.shape == (6, 3) and logits.abs().max() <= 100.0 + 1e-3
    assert (logits.argmax(dim=-1) == labels).all()  # each sentence is nearest to its own one-sentence prototype
    assert not any(name == "head" for name, _ in classifier.named_parameters())
    assert set(classifier.state_dict()) == {f"encoder.{key}" for key in encoder.state_dict()}
    assert all(key.startswith("transformer.") for key in encoder.state_dict())
    with pytest.raises(MergeflowError, match="class 3 has no examples"):
        prototype_head(encoder, ids, labels, 4)
    with pytest.raises(MergeflowError, match=r"\(classes, dim\)"):
        TextClassifier(encoder, head[0])


def test_mlp_lora_targets_name_the_mlp_and_not_attention(minilm) -> None:  # type: ignore[no-untyped-def]
    encoder, _ = minilm
    targets = mlp_lora_targets(encoder)
    assert len(targets) == 12
    assert set(targets) == {f"layer.{i}.{part}.dense" for i in range(6) for part in ("intermediate", "output")}
    with pytest.raises(MergeflowError, match="no BERT-style"):
        mlp_lora_targets(torch.nn.Linear(2, 2))


def test_pairs_are_encoded_as_pairs_with_bert_segment_ids() -> None:
    """[CLS] A [SEP] B [SEP]; segment 1 after the first separator, as the tokenizer's own token_type_ids."""
    from mergeflow.models.text_encoder import load_text_encoder, tokenize

    encoder, tokenizer = load_text_encoder()
    ids = tokenize(tokenizer, ["Who bought bread?", "Fine."], 24, pairs=["Anna bought bread.", "Yes it is."])
    expected = tokenizer(["Who bought bread?", "Fine."], ["Anna bought bread.", "Yes it is."], padding="max_length",
                         max_length=24, return_tensors="pt")
    assert ids.tolist() == expected["input_ids"].tolist()
    mask = ids != tokenizer.pad_token_id
    assert encoder.segment_ids(ids, mask).tolist() == (expected["token_type_ids"] * mask).tolist()
    single = tokenize(tokenizer, ["Anna bought bread."], 16)
    assert int(encoder.segment_ids(single, single != tokenizer.pad_token_id).sum()) == 0
