"""Fine-tuning MiniLM through the project's training loop: it learns, repeats exactly, touches only the encoder;
and peft LoRA goes into the MLP layers of the real encoder."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mergeflow.data.text_suites import TEXT_TASKS
from mergeflow.lora.adapters import LoraSpec, add_lora
from mergeflow.models.text_classifier import TextClassifier
from mergeflow.models.text_encoder import mlp_lora_targets, tokenize
from mergeflow.models.text_heads import prototype_head
from mergeflow.training.finetune import finetune_encoder
from mergeflow.training.loop import OptimConfig


@pytest.fixture(scope="module")
def reviews(minilm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """32 product reviews as token ids, their labels, and the pretrained prototype head."""
    encoder, tokenizer = minilm
    texts, labels, _ = TEXT_TASKS["product_reviews"].make_split("train", 32, 0)
    ids, labels_t = tokenize(tokenizer, texts, 32), torch.from_numpy(labels)
    return ids, labels_t, prototype_head(encoder, ids, labels_t, 2, per_class=8)


@torch.no_grad()
def _loss(classifier: TextClassifier, ids: torch.Tensor, labels: torch.Tensor) -> float:
    classifier.eval()
    return float(F.cross_entropy(classifier(ids), labels))


def _finetune(minilm, reviews, seed: int) -> tuple[TextClassifier, list[float]]:  # type: ignore[no-untyped-def]
    ids, labels, head = reviews
    classifier = TextClassifier(copy.deepcopy(minilm[0]), head)
    losses = finetune_encoder(classifier, ids, labels, OptimConfig(5e-5, 6, 8, 0.1, 1, seed), "finetune test")
    return classifier, losses


def test_finetuning_lowers_the_loss_repeats_exactly_and_changes_only_the_encoder(minilm, reviews) -> None:  # type: ignore[no-untyped-def]
    pretrained = minilm[0]
    original = {key: value.clone() for key, value in pretrained.state_dict().items()}
    ids, labels, head = reviews
    before = _loss(TextClassifier(pretrained, head), ids, labels)
    first, losses = _finetune(minilm, reviews, seed=0)
    assert _loss(first, ids, labels) < 0.8 * before
    assert torch.equal(first.head, head)
    tuned, base = first.encoder.state_dict(), pretrained.state_dict()
    assert tuned.keys() == base.keys()
    assert any(not torch.equal(tuned[key], base[key]) for key in base if ".layer." in key)
    second, losses_again = _finetune(minilm, reviews, seed=0)
    assert losses == losses_again
    assert all(torch.equal(value, second.encoder.state_dict()[key]) for key, value in tuned.items())
    assert all(torch.equal(value, original[key]) for key, value in pretrained.state_dict().items())  # worked on a copy


def test_lora_goes_into_the_mlp_of_the_real_encoder(minilm, reviews) -> None:  # type: ignore[no-untyped-def]
    ids, labels, head = reviews
    encoder = copy.deepcopy(minilm[0])
    spec = LoraSpec(rank=8, alpha=32.0, dropout=0.1, targets=mlp_lora_targets(encoder))  # TR-Merging's text experts
    with torch.no_grad():
        base = encoder(ids[:4])
    adapted = add_lora(encoder, spec).eval()
    with torch.no_grad():
        assert torch.equal(adapted(ids[:4]), base)  # B = 0 at init: the adapted encoder starts as the pretrained one
    trainable = {name: p for name, p in adapted.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in name and ("intermediate.dense" in name or ".output.dense" in name)
                             and "attention" not in name for name in trainable)
    assert sum(p.numel() for p in trainable.values()) == 6 * 2 * 8 * (384 + 1536)
    classifier = TextClassifier(adapted, head).train()
    F.cross_entropy(classifier(ids[:8]), labels[:8]).backward()
    assert all(p.grad is not None for name, p in trainable.items() if "lora_B" in name)
    assert all(p.grad is None for p in adapted.parameters() if not p.requires_grad)
