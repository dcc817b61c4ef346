"""open_clip <-> Hugging Face CLIP vision keys: the same image gives the same embedding in both, round trips are exact,
and nothing unknown or missing passes silently."""

from __future__ import annotations

import pytest
import torch
from clip_kit import WIDTH, hf_image_embedding, images, tiny_hf_clip, tiny_open_clip, tiny_tokenizer
from transformers import CLIPVisionModel

from mergeflow.checkpoints.clip_keys import HF_PROJECTION, hf_to_open_clip, open_clip_to_hf, open_clip_vision
from mergeflow.errors import MergeflowError


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def _tower_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key.removeprefix("visual."): value for key, value in state.items()}


def test_open_clip_weights_in_hugging_face_embed_images_identically(tokenizer) -> None:  # type: ignore[no-untyped-def]
    ours = tiny_open_clip(seed=1)
    theirs = tiny_hf_clip(tokenizer, seed=2)
    converted = open_clip_to_hf(ours.state_dict())  # the text tower's entries are skipped, not converted
    missing, unexpected = theirs.load_state_dict(converted, strict=False)
    assert unexpected == [] and all(key.startswith(("text_model.", "text_projection", "logit_scale")) for key in missing)
    pixels = images()
    with torch.no_grad():
        expected = ours.encode_image(pixels)
    assert expected.shape == (3, 16)
    torch.testing.assert_close(hf_image_embedding(theirs, pixels), expected, atol=1e-5, rtol=0)


def test_hugging_face_weights_in_open_clip_embed_images_identically(tokenizer) -> None:  # type: ignore[no-untyped-def]
    theirs = tiny_hf_clip(tokenizer, seed=3)
    ours = tiny_open_clip(seed=4)
    ours.visual.load_state_dict(_tower_state(hf_to_open_clip(theirs.state_dict())))  # strict: every tower weight
    pixels = images(seed=1)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(pixels), hf_image_embedding(theirs, pixels), atol=1e-5, rtol=0)


def test_round_trips_are_exact_in_both_directions(tokenizer) -> None:  # type: ignore[no-untyped-def]
    ours = open_clip_vision(tiny_open_clip(seed=5).state_dict())
    back = hf_to_open_clip(open_clip_to_hf(ours))
    assert sorted(back) == sorted(ours) and all(torch.equal(back[key], ours[key]) for key in ours)
    theirs = {key: value for key, value in tiny_hf_clip(tokenizer, seed=6).state_dict().items() if not key.startswith(("text_", "logit"))}
    again = open_clip_to_hf(hf_to_open_clip(theirs))
    assert sorted(again) == sorted(theirs) and all(torch.equal(again[key], theirs[key]) for key in theirs)


def test_a_vision_model_without_projection_gives_the_pooled_feature_or_takes_the_base_projection(tokenizer) -> None:  # type: ignore[no-untyped-def]
    base = tiny_hf_clip(tokenizer, seed=7)
    expert = CLIPVisionModel(base.config.vision_config).eval()
    vision = {key.removeprefix("vision_model."): value for key, value in base.state_dict().items() if key.startswith("vision_model.")}
    expert.load_state_dict(vision, strict=False)  # this transformers: the vision model's own keys have no prefix
    state = expert.state_dict()
    bare = hf_to_open_clip(state)
    assert "visual.proj" not in bare and len(bare) == len(hf_to_open_clip(base.state_dict())) - 1
    tower = tiny_open_clip(seed=8).visual
    assert tower.load_state_dict(_tower_state(bare), strict=False).missing_keys == ["proj"]
    tower.proj = None  # open_clip's tower without a projection: its output is the pooled class token, WIDTH wide
    pixels = images(seed=2)
    with torch.no_grad():
        pooled = expert(pixel_values=pixels).pooler_output
        assert pooled.shape == (3, WIDTH)
        torch.testing.assert_close(tower(pixels), pooled, atol=1e-5, rtol=0)
    with_base = hf_to_open_clip(state, projection=base.visual_projection.weight)
    full = hf_to_open_clip(base.state_dict())
    assert list(with_base) == list(full) and all(torch.equal(with_base[key], full[key]) for key in full)
    assert sorted(open_clip_to_hf(full, prefix="", projection=False)) == sorted(state)  # back to the expert's own layout


def test_old_position_ids_buffer_is_not_a_weight(tokenizer) -> None:  # type: ignore[no-untyped-def]
    state = tiny_hf_clip(tokenizer).state_dict()
    state["vision_model.embeddings.position_ids"] = torch.arange(17)[None]  # transformers 4.x checkpoints carry it
    assert "visual.positional_embedding" in hf_to_open_clip(state)


def _open_clip_state() -> dict[str, torch.Tensor]:
    return open_clip_vision(tiny_open_clip().state_dict())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.__setitem__("visual.transformer.resblocks.0.ls_1.gamma", torch.ones(WIDTH)), "not part of a open_clip"),
        (lambda s: s.__setitem__("visual.attn_pool.query", torch.ones(1)), "visual.attn_pool.query"),
        (lambda s: s.pop("visual.ln_post.bias"), r"missing \['visual.ln_post.bias'\]"),
        (lambda s: s.pop("visual.transformer.resblocks.1.mlp.c_fc.weight"), "resblocks.1.mlp.c_fc.weight"),
        (lambda s: s.pop("visual.proj"), "no `visual.proj`"),
        (lambda s: s.__setitem__("head.weight", torch.ones(1)), "neither open_clip tower"),
        (lambda s: s.__setitem__("visual.transformer.resblocks.0.attn.in_proj_bias", torch.ones(7)), "not three equal"),
    ],
)
def test_unknown_missing_or_odd_open_clip_keys_are_refused(change, message: str) -> None:  # type: ignore[no-untyped-def]
    state = _open_clip_state()
    change(state)
    with pytest.raises(MergeflowError, match=message):
        open_clip_to_hf(state, where="cars.pt")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("vision_model.encoder.layers.1.self_attn.k_proj.weight"), "missing.*layers.1.self_attn.k_proj.weight"),
        (lambda s: s.__setitem__("vision_model.encoder.layers.0.self_attn.q_norm.weight", torch.ones(1)), "q_norm"),
        (lambda s: s.__setitem__("classifier.weight", torch.ones(1)), "neither Hugging Face CLIP tower"),
        (lambda s: s.__setitem__(HF_PROJECTION, torch.ones(4, 5)), r"shape \(4, 5\) does not fit a 32-wide"),
        (lambda s: s.__setitem__("vision_model.encoder.layers.0.self_attn.v_proj.bias", torch.ones(3)), "differ in shape"),
        (lambda s: [s.pop(key) for key in list(s) if "class_embedding" in key], "not a Hugging Face CLIP vision model"),
    ],
)
def test_unknown_missing_or_odd_hugging_face_keys_are_refused(tokenizer, change, message: str) -> None:  # type: ignore[no-untyped-def]
    state = tiny_hf_clip(tokenizer).state_dict()
    change(state)
    with pytest.raises(MergeflowError, match=message):
        hf_to_open_clip(state, where="expert")


def test_a_second_projection_is_refused(tokenizer) -> None:  # type: ignore[no-untyped-def]
    state = tiny_hf_clip(tokenizer).state_dict()
    with pytest.raises(MergeflowError, match="has its own"):
        hf_to_open_clip(state, projection=state[HF_PROJECTION])
