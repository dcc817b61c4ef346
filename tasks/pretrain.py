"""Stage pretrain: the base model theta_0 every expert starts from, saved as artifacts/base/clip.safetensors.

With ``backbone.pretrained: null`` the backbone is trained here, contrastively, on the generated
caption corpus (disjoint from every task split); with an open_clip tag (e.g. ``openai``) the tagged
weights are loaded through open_clip and stored unchanged.
"""

from __future__ import annotations

import argparse

import torch

from mergeflow.data.pretrain_corpus import pretraining_corpus
from mergeflow.models.backbone import clip_tokenizer, create_clip, preprocess_config, save_clip
from mergeflow.params import Params
from mergeflow.seeding import seed_everything
from mergeflow.training.contrastive import pretrain_clip
from mergeflow.training.loop import OptimConfig
from tasks._paths import BASE_MODEL
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    cfg = params.pretrain
    seed_everything(cfg.seed)
    clip = create_clip(params.backbone.model, params.backbone.pretrained)
    if params.backbone.pretrained is None:
        images, captions = pretraining_corpus(cfg.corpus_size, cfg.seed, params.suite.image_size)
        tokens = clip_tokenizer(params.backbone.model)(captions)
        size, mean, std = preprocess_config(clip)
        optim = OptimConfig(**cfg.model_dump(exclude={"corpus_size"}))
        losses = pretrain_clip(clip, torch.from_numpy(images), tokens, size, mean, std, optim)
        print(f"pretrain: loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps on {len(captions)} captioned images")
    save_clip(clip, BASE_MODEL, params.backbone.model)


if __name__ == "__main__":
    run_stage("pretrain", "Build the base model: pretrain the built-in backbone or load an open_clip tag.", build)
