"""theta_0 is built once per stage process and handed out as copies: each copy is what a fresh load gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mergeflow.models.backbone import create_clip, load_clip, preprocess_config, save_clip
from mergeflow.params import BackboneParams, load_params
from tasks._artifacts import base_encoder, base_image_encoder
from tasks._paths import BASE_MODEL


def _save_base(seed: int) -> None:
    torch.manual_seed(seed)
    BASE_MODEL.parent.mkdir(parents=True, exist_ok=True)
    save_clip(create_clip("mf-vit-tiny"), BASE_MODEL, "mf-vit-tiny")


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_copies_match_a_fresh_load_and_stay_independent(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = load_params(root / "params.yaml")  # a vision suite; the tiny backbone keeps the test fast
    params = params.model_copy(update={"backbone": BackboneParams(model="mf-vit-tiny", pretrained=None)})
    monkeypatch.chdir(tmp_path)
    _save_base(0)
    fresh = load_clip(BASE_MODEL, "mf-vit-tiny")
    first, config = base_image_encoder(params)
    assert config == preprocess_config(fresh)
    assert _same(first, fresh.visual) and first.training == fresh.visual.training
    with torch.no_grad():  # training or loading weights into one copy leaves the next one untouched
        next(first.parameters()).add_(1.0)
    second = base_encoder(params)
    assert second is not first and _same(second, fresh.visual)

    _save_base(1)  # a new base file (another run in the same process) is read again, not served from the cache
    os.utime(BASE_MODEL, ns=(1, 1))
    assert _same(base_encoder(params), load_clip(BASE_MODEL, "mf-vit-tiny").visual)
    assert not _same(base_encoder(params), fresh.visual)
