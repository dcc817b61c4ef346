"""Tiny random RoBERTa and GPT-2 GLUE experts through the real save_pretrained / from_pretrained path: the head is
found from the architecture, bodies share the base's keys, heads stay per task, and a merged body with task t's head
gives exactly the logits of a model built by hand from those weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    RobertaConfig,
    RobertaForMaskedLM,
)

from mergeflow.errors import MergeflowError
from mergeflow.language.sequence_classifiers import classifier_for_task, head_prefixes, load_expert, load_pool

TASKS = {"sst2": 2, "mnli": 3}  # classes per task: the heads differ in shape, the bodies do not
ARCHITECTURES = {
    "roberta": (lambda: RobertaForMaskedLM(RobertaConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                                         intermediate_size=32, max_position_embeddings=40,
                                                         pad_token_id=1, bos_token_id=0, eos_token_id=2)), "classifier"),
    "gpt2": (lambda: GPT2LMHeadModel(GPT2Config(vocab_size=60, n_embd=16, n_layer=2, n_head=2, n_positions=32,
                                                pad_token_id=0, bos_token_id=0, eos_token_id=0)), "score"),
}


def _tokens(architecture: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows, the second right-padded with the architecture's pad id (GPT-2 finds its last token by it)."""
    ids = torch.randint(3, 60, (3, 7), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    ids[1, 5:] = 1 if architecture == "roberta" else 0
    return ids, mask


def _build(tmp_path: Path, architecture: str) -> tuple[Path, dict[str, Path]]:
    """A pretrained-style base (a language-model checkpoint, no classifier) and one fine-tuned-style expert per task."""
    make, _ = ARCHITECTURES[architecture]
    torch.manual_seed(0)
    base = make()
    base.save_pretrained(tmp_path / "base")
    experts = {}
    for index, (task, classes) in enumerate(TASKS.items()):
        torch.manual_seed(10 + index)
        model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=classes)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))  # "fine-tuning": body and head both move
        model.save_pretrained(tmp_path / task)
        experts[task] = tmp_path / task
    return tmp_path / "base", experts


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_bodies_are_shared_and_heads_are_per_task(tmp_path: Path, architecture: str) -> None:
    base, experts = _build(tmp_path, architecture)
    pool = load_pool(base, experts)
    head = ARCHITECTURES[architecture][1]
    assert set(pool.experts) == set(TASKS)
    for task, expert in pool.experts.items():
        assert expert.head_prefixes == (head,)
        assert sorted(expert.body) == sorted(pool.base_body)
        assert expert.head and all(key.startswith(head + ".") for key in expert.head)
        assert not any(key.startswith(head + ".") for key in expert.body)
        assert expert.num_labels == TASKS[task]
        assert not torch.equal(next(iter(expert.body.values())), pool.base_body[next(iter(expert.body))])
    out_rows = {task: [v for k, v in e.head.items() if k.endswith("weight")][-1].shape[0] for task, e in pool.experts.items()}
    assert out_rows == TASKS


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_merged_body_with_a_task_head_gives_the_hand_built_logits(tmp_path: Path, architecture: str) -> None:
    base, experts = _build(tmp_path, architecture)
    pool = load_pool(base, experts)
    ids, mask = _tokens(architecture)
    for task, expert in pool.experts.items():
        reference = AutoModelForSequenceClassification.from_pretrained(experts[task]).eval()
        with torch.no_grad():  # its own body and head: the expert as fine-tuned
            assert torch.equal(classifier_for_task(expert.body, expert)(input_ids=ids, attention_mask=mask).logits,
                               reference(input_ids=ids, attention_mask=mask).logits)
    merged = {key: (pool.experts["sst2"].body[key] + pool.experts["mnli"].body[key]) / 2 for key in pool.base_body}
    model = None
    for task, expert in pool.experts.items():
        by_hand = AutoModelForSequenceClassification.from_pretrained(experts[task]).eval()
        with torch.no_grad():
            for name, parameter in by_hand.named_parameters():
                if not name.startswith(expert.head_prefixes):
                    parameter.copy_(merged[name])
            expected = by_hand(input_ids=ids, attention_mask=mask).logits
        model = classifier_for_task(merged, expert)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        assert logits.shape == (3, TASKS[task])
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)
    assert model is not None  # reuse: loading the sst2 head into the mnli model does not fit
    with pytest.raises(MergeflowError, match="do not fit"):
        classifier_for_task(merged, pool.experts["sst2"], model)


def test_an_expert_with_another_body_is_named_with_the_key(tmp_path: Path) -> None:
    base, experts = _build(tmp_path, "roberta")
    wider = RobertaConfig.from_pretrained(base)
    wider.intermediate_size = 48
    wider.num_labels = 2
    torch.manual_seed(5)
    AutoModelForSequenceClassification.from_config(wider).save_pretrained(tmp_path / "wider")
    with pytest.raises(MergeflowError, match=r"expert 'cola'.*'roberta\.encoder\.layer\.0\.intermediate\.dense\.weight'"):
        load_pool(base, {**experts, "cola": tmp_path / "wider"})
    (tmp_path / "g").mkdir()
    _, gpt_experts = _build(tmp_path / "g", "gpt2")
    with pytest.raises(MergeflowError, match="is a gpt2 model, the base is roberta"):
        load_pool(base, {"sst2": gpt_experts["sst2"]})


def test_an_expert_without_its_head_and_a_bare_encoder_are_refused(tmp_path: Path) -> None:
    base, _ = _build(tmp_path, "gpt2")
    with pytest.raises(MergeflowError, match=r"lacks \['score\.weight'\]"):
        load_expert("sst2", base)  # a language-model checkpoint: its classifier would stay random
    from transformers import GPT2Model

    with pytest.raises(MergeflowError, match="no body submodule"):
        head_prefixes(GPT2Model(GPT2Config(vocab_size=60, n_embd=16, n_layer=1, n_head=2, n_positions=32)))
    with pytest.raises(MergeflowError, match="no such model folder"):
        load_expert("sst2", tmp_path / "missing" / "folder")


def test_a_gpt2_without_a_pad_token_classifies_padded_batches(tmp_path: Path) -> None:
    """The public ``gpt2`` config has no pad_token_id; its experts pad with end-of-text, and a right-padded row's
    logits equal that row's unpadded ones."""
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=60, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=59,
                               eos_token_id=59)).save_pretrained(tmp_path / "base")
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2).save_pretrained(tmp_path / "sst2")
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "sst2").config.pad_token_id is None
    pool = load_pool(tmp_path / "base", {"sst2": tmp_path / "sst2"})
    model = classifier_for_task(pool.experts["sst2"].body, pool.experts["sst2"])
    ids = torch.randint(3, 59, (2, 7), generator=torch.Generator().manual_seed(3))
    ids[1, 4:] = 59
    mask = (torch.arange(7) < torch.tensor([[7], [4]])).long()
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits
        alone = model(input_ids=ids[1:, :4]).logits
    torch.testing.assert_close(batched[1:], alone, rtol=0, atol=1e-6)
