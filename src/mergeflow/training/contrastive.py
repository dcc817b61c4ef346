"""Contrastive image-caption pretraining (CLIP's symmetric InfoNCE) for backbones built inside the pipeline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mergeflow.models.classifier import preprocess_images
from mergeflow.models.clip_parts import encode_image, encode_text, logit_scale, visual
from mergeflow.runtime.device import CPU
from mergeflow.training.loop import OptimConfig, run_training


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
              caption_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric cross-entropy over the in-batch image-text similarity matrix.

    With ``caption_ids``, every pair whose captions are identical counts as a positive (soft targets spread
    over them) instead of a false negative: a small caption vocabulary repeats within a batch.
    """
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp().clamp(max=100.0) * image_features @ text_features.T
    if caption_ids is None:
        targets = torch.eye(len(logits), device=logits.device)
    else:
        targets = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = targets / targets.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def pretrain_clip(clip: nn.Module, images: torch.Tensor, tokens: torch.Tensor, image_size: int,
                  mean: tuple[float, ...], std: tuple[float, ...], config: OptimConfig, *, device: torch.device = CPU,
                  autocast: str = "none") -> list[float]:
    """Train both towers of ``clip`` in place on uint8 ``images`` and their tokenised captions (``clip`` moved to
    ``device``, each batch moved at the loop)."""

    caption_ids = torch.unique(tokens, dim=0, return_inverse=True)[1]

    def batch_loss(batch: torch.Tensor) -> torch.Tensor:
        image_features = encode_image(clip, preprocess_images(images[batch].to(device), image_size, mean, std))
        return clip_loss(image_features, encode_text(clip, tokens[batch].to(device)), logit_scale(clip),
                         caption_ids[batch].to(device))

    clip.to(device).train()
    losses = run_training(clip.parameters(), batch_loss, len(images), config, "pretrain", device=device, autocast=autocast)
    clip.eval()
    return losses


@torch.no_grad()
def caption_embeddings(clip: nn.Module, tokens: torch.Tensor, batch_size: int = 256,
                       device: torch.device = CPU) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised embedding of each distinct caption, on ``clip``'s ``device``; index of each item's caption, on the
    CPU): a locked tower runs once per caption."""
    unique, caption_ids = torch.unique(tokens, dim=0, return_inverse=True)
    clip.eval()
    chunks = [F.normalize(encode_text(clip, unique[i : i + batch_size].to(device)), dim=-1) for i in range(0, len(unique), batch_size)]
    return torch.cat(chunks), caption_ids


def pretrain_image_tower(clip: nn.Module, images: torch.Tensor, tokens: torch.Tensor, image_size: int,
                         mean: tuple[float, ...], std: tuple[float, ...], config: OptimConfig, *, device: torch.device = CPU,
                         autocast: str = "none") -> list[float]:
    """Train only the image tower (and the logit scale) of ``clip`` against its frozen text tower's caption embeddings
    (``clip`` moved to ``device``, each batch moved at the loop).

    This is CLIP's loss with a locked, pretrained language model on the text side: class-prompt heads then come from
    real language embeddings, and each caption is embedded once instead of at every step.
    """
    clip.to(device)
    text_features, caption_ids = caption_embeddings(clip, tokens, device=device)
    for parameter in clip.parameters():
        parameter.requires_grad_(False)
    trainable = [*visual(clip).parameters(), logit_scale(clip)]
    for parameter in trainable:
        parameter.requires_grad_(True)

    def batch_loss(batch: torch.Tensor) -> torch.Tensor:
        ids = caption_ids[batch].to(device)
        image_features = encode_image(clip, preprocess_images(images[batch].to(device), image_size, mean, std))
        return clip_loss(image_features, text_features[ids], logit_scale(clip), ids)

    visual(clip).train()
    losses = run_training(trainable, batch_loss, len(images), config, "pretrain", device=device, autocast=autocast)
    clip.eval()
    for parameter in clip.parameters():
        parameter.requires_grad_(True)
    return losses
