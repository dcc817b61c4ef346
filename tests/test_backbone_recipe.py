"""The packaged backbone: its recipe is deterministic at a fixed thread count, and the shipped file is hash-checked."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_kit import ROOT, project_env, run

from mergeflow.errors import MergeflowError
from mergeflow.models import packaged
from mergeflow.models.packaged import PACKAGED, file_sha256, load_packaged_clip, packaged_backbone
from mergeflow.profiles import resolve_profile

SHORT_RECIPE = {"corpus_size": 48, "steps": 3, "batch_size": 16, "warmup_steps": 1}


def _short_recipe_run(workdir: Path) -> str:
    """Run the pretrain stage on profiles/backbone.yaml shortened to three steps; the sha256 of the base model file."""
    workdir.mkdir()
    profile = resolve_profile(ROOT / "profiles" / "backbone.yaml")  # an overlay on params.yaml
    assert profile["backbone"]["pretrained"] is None, "the recipe profile must train the backbone"
    profile["pretrain"].update(SHORT_RECIPE)
    (workdir / "params.yaml").write_text(yaml.safe_dump(profile))
    env = project_env(ROOT)  # this checkout's stages, one thread (tests/pipeline_kit.STAGE_ENV)
    proc = run([sys.executable, "-m", "tasks.pretrain"], workdir, env)
    assert "over 3 steps" in proc.stdout
    return hashlib.sha256((workdir / "artifacts" / "base" / "clip.safetensors").read_bytes()).hexdigest()


def test_the_recipe_run_twice_at_one_thread_gives_the_same_bytes(tmp_path: Path) -> None:
    assert _short_recipe_run(tmp_path / "first") == _short_recipe_run(tmp_path / "second")


def test_the_shipped_backbone_matches_its_recorded_hash_size_and_card() -> None:
    for spec in PACKAGED.values():
        assert spec.path.stat().st_size <= 25 * 1024 * 1024
        assert file_sha256(spec.path) == spec.sha256
        card = spec.card.read_text()
        assert spec.sha256 in card and "profiles/backbone.yaml" in card


def test_the_default_params_start_from_the_shipped_backbone() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    spec = packaged_backbone(params["backbone"]["pretrained"], params["backbone"]["model"])
    clip = load_packaged_clip(f"mergeflow:{spec.name}", spec.model)
    assert clip.visual.conv1.weight.abs().sum() > 0


def test_a_changed_or_unknown_packaged_backbone_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = next(iter(PACKAGED.values()))
    copy = tmp_path / spec.path.name
    shutil.copy(spec.path, copy)
    with open(copy, "r+b") as handle:  # flip one byte near the end (inside the tensor data)
        handle.seek(-3, 2)
        byte = handle.read(1)
        handle.seek(-3, 2)
        handle.write(bytes([byte[0] ^ 1]))
    monkeypatch.setattr(packaged, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(MergeflowError, match="sha256"):
        load_packaged_clip(f"mergeflow:{spec.name}", spec.model)
    with pytest.raises(MergeflowError, match="unknown packaged backbone"):
        packaged_backbone("mergeflow:no-such-model", spec.model)
    with pytest.raises(MergeflowError, match="backbone.model is 'mf-vit-tiny'"):
        packaged_backbone(f"mergeflow:{spec.name}", "mf-vit-tiny")
