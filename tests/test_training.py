"""Training pieces: the schedule, the batch stream, and fine-tuning that learns, is seeded and keeps the head frozen."""

from __future__ import annotations

import itertools

import torch

from mergeflow.models.backbone import create_clip, preprocess_config
from mergeflow.models.classifier import ImageClassifier
from mergeflow.training.batches import epoch_batches
from mergeflow.training.contrastive import clip_loss
from mergeflow.training.finetune import finetune_encoder
from mergeflow.training.loop import OptimConfig
from mergeflow.training.schedule import warmup_cosine


def test_warmup_then_cosine_to_zero() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))
    assert lrs[-1] < 0.05


def test_each_epoch_visits_every_item_once() -> None:
    batches = list(epoch_batches(10, 5, 4, torch.Generator().manual_seed(0)))
    assert sorted(torch.cat(batches[:2]).tolist()) == list(range(10))
    assert sorted(torch.cat(batches[2:]).tolist()) == list(range(10))


def test_clip_loss_prefers_matching_pairs() -> None:
    feats = torch.eye(4)
    assert clip_loss(feats, feats, torch.tensor(3.0)) < clip_loss(feats, feats.roll(1, 0), torch.tensor(3.0))


def _toy_problem() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(32) % 2
    images = torch.randint(0, 60, (32, 32, 32, 3), dtype=torch.uint8, generator=g)
    images[labels == 1, :16] += 150  # class 1: bright upper half
    return images, labels


def _finetuned(seed: int) -> tuple[ImageClassifier, list[float], torch.Tensor]:
    torch.manual_seed(0)
    clip = create_clip("mf-vit-tiny")
    size, mean, std = preprocess_config(clip)
    head = torch.nn.functional.normalize(torch.randn(2, 128, generator=torch.Generator().manual_seed(1)), dim=-1) * 10
    classifier = ImageClassifier(clip.visual, head, size, mean, std)
    images, labels = _toy_problem()
    losses = finetune_encoder(classifier, images, labels, OptimConfig(1e-3, 30, 16, 0.0, 3, seed))
    return classifier, losses, head


def test_finetuning_learns_is_deterministic_and_never_touches_the_head() -> None:
    first, losses, head = _finetuned(seed=0)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert torch.equal(first.head, head)
    second, losses_again, _ = _finetuned(seed=0)
    assert losses == losses_again
    for key, value in first.encoder.state_dict().items():
        assert torch.equal(value, second.encoder.state_dict()[key])
    _, other_losses, _ = _finetuned(seed=1)
    assert other_losses != losses
