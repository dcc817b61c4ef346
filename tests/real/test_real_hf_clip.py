"""Hugging Face CLIP folders (save_pretrained): the image tower in open_clip keys, and zero-shot heads from the text
tower that match a hand computation. Only local folders: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from clip_kit import EMBED, tiny_hf_clip, tiny_tokenizer
from safetensors.torch import load_file, save_file
from transformers import BertConfig, CLIPModel, CLIPVisionModel

from mergeflow.checkpoints.clip_keys import hf_to_open_clip
from mergeflow.checkpoints.hf_clip import (
    hf_clip_vision_state,
    hf_projection,
    hf_zero_shot_head,
    load_hf_clip,
    load_hf_tokenizer,
)
from mergeflow.cli import main
from mergeflow.errors import MergeflowError
from mergeflow.statedict.io import read_safetensors


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CLIPModel with its tokenizer, and a CLIPVisionModel of the same vision weights (as FusionBench's experts)."""
    root = tmp_path_factory.mktemp("hf")
    tokenizer = tiny_tokenizer(root / "vocab")
    model = tiny_hf_clip(tokenizer, seed=21)
    model.save_pretrained(root / "clip")
    tokenizer.save_pretrained(root / "clip")
    expert = CLIPVisionModel(model.config.vision_config)
    vision = {key.removeprefix("vision_model."): value for key, value in model.state_dict().items() if key.startswith("vision_model.")}
    expert.load_state_dict(vision, strict=False)
    expert.save_pretrained(root / "vision")
    return {"clip": root / "clip", "vision": root / "vision"}


def _same(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> bool:
    return sorted(left) == sorted(right) and all(torch.equal(left[key], right[key]) for key in right)


def test_a_clip_model_folder_gives_its_image_tower_in_open_clip_keys(folders: dict[str, Path]) -> None:
    model = load_hf_clip(folders["clip"])
    assert isinstance(model, CLIPModel) and not model.training
    state = hf_clip_vision_state(folders["clip"])
    assert "visual.proj" in state and not any(key.startswith(("text", "logit")) for key in state)
    assert _same(state, hf_to_open_clip(model.state_dict()))
    stored = load_file(folders["clip"] / "model.safetensors")
    assert torch.equal(state["visual.proj"], stored["visual_projection.weight"].t())


def test_a_vision_model_folder_has_no_projection_unless_its_base_gives_it(folders: dict[str, Path]) -> None:
    expert = load_hf_clip(folders["vision"])
    assert isinstance(expert, CLIPVisionModel)
    bare = hf_clip_vision_state(expert)
    assert "visual.proj" not in bare
    base = load_hf_clip(folders["clip"])
    with_base = hf_clip_vision_state(folders["vision"], projection=hf_projection(base))
    assert _same(with_base, hf_clip_vision_state(base))
    with pytest.raises(MergeflowError, match="has no `visual_projection.weight`"):
        hf_projection(expert)


def test_the_cli_converts_a_folder_to_the_open_clip_tower(folders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "expert.safetensors"
    assert main(["convert-checkpoint", str(folders["clip"]), str(out)]) == 0
    tensors, meta = read_safetensors(out)
    assert meta == {"converted_from": "clip", "layout": "open_clip vision tower"}
    assert _same(tensors, hf_clip_vision_state(folders["clip"]))


def test_the_cli_gives_a_vision_model_its_base_projection(folders: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bare, full = tmp_path / "bare.safetensors", tmp_path / "full.safetensors"
    assert main(["convert-checkpoint", str(folders["vision"]), str(bare)]) == 0
    assert "visual.proj" not in read_safetensors(bare)[0]
    assert main(["convert-checkpoint", str(folders["vision"]), str(full), "--projection-from", str(folders["clip"])]) == 0
    assert _same(read_safetensors(full)[0], hf_clip_vision_state(folders["clip"]))  # the base's keys: they merge together
    capsys.readouterr()
    assert main(["convert-checkpoint", str(full), str(tmp_path / "x.safetensors"), "--projection-from", str(folders["clip"])]) == 2
    assert "for a Hugging Face CLIPVisionModel folder" in capsys.readouterr().err


def test_a_folder_missing_a_weight_or_not_a_clip_is_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    load_hf_clip(folders["clip"]).save_pretrained(broken)
    state = load_file(broken / "model.safetensors")
    del state["vision_model.post_layernorm.bias"]
    save_file(state, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(MergeflowError, match=r"lacks \['vision_model.post_layernorm.bias'\]"):
        load_hf_clip(broken)
    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path / "bert")
    with pytest.raises(MergeflowError, match="a 'bert' model"):
        load_hf_clip(tmp_path / "bert")
    with pytest.raises(MergeflowError, match="could not be loaded"):
        load_hf_clip(tmp_path / "absent")


@torch.no_grad()
def _by_hand(model: CLIPModel, tokenizer, class_names: list[str], templates: list[str]) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """One prompt at a time, unpadded: the end-of-text token's final hidden state, projected, normalised, averaged."""
    rows = []
    for name in class_names:
        embeddings = []
        for template in templates:
            ids = torch.tensor([tokenizer(template.format(name)).input_ids])
            hidden = model.text_model(input_ids=ids).last_hidden_state[0]
            eot = int((ids[0] == tokenizer.eos_token_id).nonzero()[0])
            embedding = hidden[eot] @ model.text_projection.weight.t()
            embeddings.append(embedding / embedding.norm())
        mean = torch.stack(embeddings).mean(dim=0)
        rows.append(mean / mean.norm())
    return torch.stack(rows) * model.logit_scale.exp()


def test_zero_shot_heads_from_the_text_tower_match_a_hand_computation(folders: dict[str, Path]) -> None:
    model, tokenizer = load_hf_clip(folders["clip"]), load_hf_tokenizer(folders["clip"])
    class_names = ["cat", "sea lion", "x"]
    templates = ["a photo of a {}.", "{}", 'a photo of the number: "{}".']  # prompts of different lengths: padding
    head = hf_zero_shot_head(model, tokenizer, class_names, templates)
    assert head.shape == (3, EMBED)
    torch.testing.assert_close(head, _by_hand(model, tokenizer, class_names, templates), atol=1e-5, rtol=0)
    scale = float(model.logit_scale.detach().exp())
    torch.testing.assert_close(head.norm(dim=1), torch.full((3,), scale))
    single = hf_zero_shot_head(model, tokenizer, ["cat"], templates[:1])
    ids = tokenizer(["a photo of a cat."], return_tensors="pt")
    with torch.no_grad():  # one prompt: the head is transformers' own text feature, normalised and scaled
        text = F.normalize(model.get_text_features(**ids).pooler_output, dim=-1) * scale
    torch.testing.assert_close(single, text, atol=1e-5, rtol=0)


def test_a_hub_id_goes_to_from_pretrained_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    asked: list[object] = []

    def offline(name: object, *args: object, **kwargs: object) -> None:  # never reaches the hub
        asked.append(name)
        raise OSError("offline")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    with pytest.raises(MergeflowError, match="needs network access or the local Hugging Face cache"):
        load_hf_clip("openai/clip-vit-base-patch32")
    assert asked == ["openai/clip-vit-base-patch32"]


def test_heads_need_the_text_tower(folders: dict[str, Path]) -> None:
    tokenizer = load_hf_tokenizer(folders["clip"])
    with pytest.raises(MergeflowError, match="no text tower"):
        hf_zero_shot_head(load_hf_clip(folders["vision"]), tokenizer, ["cat"], ["{}"])
