"""A sequence classifier's heads (models/sequence_encoder.py, training/probe.py, params ``heads``): a stored head
comes back as the same module from the base file's config alone, a probe learns a separable task on frozen features,
and each mistake (a vision suite, a task with no head source, a head of another width) is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sequence_kit import tiny_base, tiny_expert

from mergeflow.errors import MergeflowError
from mergeflow.language.sequence_classifiers import load_sequence_classifier, split_state
from mergeflow.models.sequence_encoder import base_metadata, encoder_from_metadata, head_from_metadata, split_model
from mergeflow.models.text_backbone import load_text_tokenizer
from mergeflow.params import load_params, parse_params
from mergeflow.profiles import resolve_profile
from mergeflow.training.loop import OptimConfig
from mergeflow.training.probe import train_probe

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("family", ["roberta", "gpt2"])
def test_the_base_metadata_rebuilds_the_encoder_and_a_brought_head(tmp_path: Path, family: str) -> None:
    tiny_base(tmp_path / "base", family)
    tokenizer = load_text_tokenizer(tmp_path / "base")  # GPT-2 pads with its end-of-text token
    base = load_sequence_classifier(tmp_path / "base", head_required=False)
    encoder, _ = split_model(base, tokenizer.pad_token_id, tokenizer.sep_token_id)
    metadata = base_metadata(base, tokenizer.pad_token_id, tokenizer.sep_token_id)
    rebuilt = encoder_from_metadata(metadata, encoder.state_dict())
    ids = torch.randint(3, 200, (4, 12))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(ids), encoder(ids), atol=0, rtol=0)
    expert = tiny_expert(tmp_path / "base", tmp_path / "expert", num_labels=3, seed=2)
    _, head_state, _ = split_state(expert)
    head = head_from_metadata(metadata, 3, state=head_state)
    _, expert_head = split_model(expert, tokenizer.pad_token_id)
    features = torch.randn(5, head.width)
    with torch.no_grad():
        torch.testing.assert_close(head(features), expert_head(features), atol=0, rtol=0)
    with pytest.raises(MergeflowError, match="the task head: does not fit"):
        head_from_metadata(metadata, 2, state=head_state)  # a 3-label head is not a 2-class task's


def test_a_probe_learns_a_separable_task_on_frozen_features(tmp_path: Path) -> None:
    _, tokenizer = tiny_base(tmp_path / "base", "roberta")
    base = load_sequence_classifier(tmp_path / "base", head_required=False)
    metadata = base_metadata(base, tokenizer.pad_token_id, tokenizer.sep_token_id)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (128,), generator=generator)
    features = torch.randn(128, 16, generator=generator) + 3.0 * (2 * labels[:, None] - 1).float()
    head = head_from_metadata(metadata, 2, seed=0)
    losses = train_probe(head, features, labels, OptimConfig(lr=0.01, steps=60, batch_size=32, weight_decay=0.0,
                                                            warmup_steps=0, seed=0))
    after = float((head(features).argmax(dim=-1) == labels).double().mean())
    assert losses[-1] < losses[0] / 4 and after >= 0.95
    assert not any(p.requires_grad for p in head.parameters()), "the probe is frozen once trained"
    again = head_from_metadata(metadata, 2, seed=0)
    train_probe(again, features, labels, OptimConfig(lr=0.01, steps=60, batch_size=32, weight_decay=0.0, warmup_steps=0,
                                                     seed=0))
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), again.state_dict().values(), strict=True))


def _profile(name: str) -> dict:
    return resolve_profile(ROOT / "profiles" / name)


def test_the_tiny_profiles_validate_and_the_mistakes_are_named() -> None:
    for name in ("tiny_glue_roberta.yaml", "tiny_glue_gpt2.yaml"):
        assert load_params(ROOT / "profiles" / name).backbone.architecture == "sequence_classifier"
    raw = _profile("tiny_glue_roberta.yaml")
    raw["heads"]["probe"] = None
    with pytest.raises(MergeflowError, match="heads: mrpc have no head checkpoint"):
        parse_params(raw)
    raw = _profile("tiny_glue_roberta.yaml")
    raw["heads"]["checkpoints"]["qnli"] = "x/y/z"
    with pytest.raises(MergeflowError, match=r"heads\.checkpoints\.qnli: not a task"):
        parse_params(raw)
    vision = _profile("smoke.yaml")
    vision["backbone"]["architecture"] = "sequence_classifier"
    with pytest.raises(MergeflowError, match="sequence_classifier is a text backbone"):
        parse_params(vision)
    vision = _profile("smoke.yaml")
    vision["heads"]["probe"] = _profile("tiny_glue_roberta.yaml")["heads"]["probe"]
    with pytest.raises(MergeflowError, match="heads: applies to backbone.architecture: sequence_classifier only"):
        parse_params(vision)


def test_a_causal_lm_needs_glue_tasks_and_trains_its_experts() -> None:
    assert load_params(ROOT / "profiles" / "tiny_glue_qwen.yaml").backbone.architecture == "causal_lm"
    raw = _profile("tiny_glue_qwen.yaml")
    raw["finetune"]["sst2"] = {"checkpoint": "real_models/qwen/sst2"}
    with pytest.raises(MergeflowError, match=r"finetune\.sst2\.checkpoint: a causal LM's full experts are trained here"):
        parse_params(raw)
    raw = _profile("tiny_glue_qwen.yaml")
    raw["suite"]["datasets"]["sst2"] = {"kind": "disk", "path": "real_data/reviews", "text_columns": ["text"],
                                        "label_column": "label", "test_split": "test"}
    with pytest.raises(MergeflowError, match=r"suite\.datasets\.sst2: a causal LM classifies by a task's prompt"):
        parse_params(raw)
