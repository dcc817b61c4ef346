"""Full fine-tuning of an encoder (image or text) against a frozen head: one expert per task."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mergeflow.models.classifier import ImageClassifier
from mergeflow.models.text_classifier import TextClassifier
from mergeflow.runtime.device import CPU
from mergeflow.training.loop import OptimConfig, run_training


def finetune_encoder(classifier: ImageClassifier | TextClassifier, images: torch.Tensor, labels: torch.Tensor,
                     config: OptimConfig, description: str = "finetune", *, device: torch.device = CPU,
                     autocast: str = "none") -> list[float]:
    """Train ``classifier.encoder`` in place on uint8 images or token ids with cross-entropy; the head stays frozen.

    The classifier is moved to ``device`` (and left there); each batch is moved at the loop."""
    classifier.to(device).train()
    losses = run_training(classifier.encoder.parameters(),
                          lambda batch: F.cross_entropy(classifier(images[batch].to(device)), labels[batch].to(device)),
                          len(images), config, description, device=device, autocast=autocast)
    classifier.eval()
    return losses
