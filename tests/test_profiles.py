"""Profiles (overlays on params.yaml or on another profile) and the start-up cost of the light stages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mergeflow.errors import MergeflowError
from mergeflow.params import load_params, parse_params
from mergeflow.profiles import overlay, resolve_profile, write_profile


def test_full_analysis_profile_changes_only_the_analysis_sweeps(root: Path) -> None:
    base = yaml.safe_load((root / "params.yaml").read_text())
    full = resolve_profile(root / "profiles" / "full-analysis.yaml")
    params = parse_params(full, "profiles/full-analysis.yaml")
    assert params.route.analysis.seeds == [0, 1, 2, 3, 4]
    assert params.adapt.analysis.ablation == ["adarank_ta", "adarank_cart"]
    assert params.adapt.analysis.data_fractions == [0.01, 0.1]
    assert params.route.feature_models == ["weight_averaging", "task_arithmetic", "ties"]  # Table F7's comparison
    analyses = {"route": ("analysis", "feature_models"), "adapt": ("analysis",)}
    for section, changed in analyses.items():  # everything else is params.yaml's, whatever it is today
        assert {k: v for k, v in full[section].items() if k not in changed} == {k: v for k, v in base[section].items() if k not in changed}
    assert {k: v for k, v in full.items() if k not in ("route", "adapt")} == {k: v for k, v in base.items() if k not in ("route", "adapt")}
    default = load_params(root / "params.yaml")  # the default runs fewer variants than the profile
    assert len(default.route.analysis.seeds) < len(params.route.analysis.seeds)
    assert default.route.feature_models == [default.route.feature_model]  # the default caches the routers' one only
    assert len(default.adapt.analysis.ablation) + len(default.adapt.analysis.data_fractions) < 4


def test_overlay_merges_mappings_replaces_lists_and_rejects_unknown_keys() -> None:
    base = {"a": {"b": [1, 2], "c": 1}, "d": 2}
    assert overlay(base, {"a": {"b": [3]}}) == {"a": {"b": [3], "c": 1}, "d": 2}
    assert base == {"a": {"b": [1, 2], "c": 1}, "d": 2}
    with pytest.raises(MergeflowError, match=r"profile key a\.bb: not in the base"):
        overlay(base, {"a": {"bb": 1}})


def test_overlay_replaces_a_mapping_marked_replace_whole() -> None:
    base = {"finetune": {"digits": {"lr": 1, "steps": 2}, "signs": {"lr": 1, "steps": 2}}, "merge": {"ties": {"k": 0.2}}}
    text = {"finetune": {"__replace__": True, "reviews": {"lr": 3, "steps": 4}}, "merge": {"ties": {"k": 0.5}}}
    assert overlay(base, text) == {"finetune": {"reviews": {"lr": 3, "steps": 4}}, "merge": {"ties": {"k": 0.5}}}
    assert overlay(base, {"merge": {"ties": {"__replace__": True}}}) == {**base, "merge": {"ties": {}}}
    with pytest.raises(MergeflowError, match=r"profile key finetun: not in the base"):  # still checked beside a marker
        overlay(base, {"finetun": {"__replace__": True, "reviews": {}}})
    with pytest.raises(MergeflowError, match=r"finetune\.__replace__: must be true"):
        overlay(base, {"finetune": {"__replace__": "yes", "reviews": {}}})
    with pytest.raises(MergeflowError, match=r"merge\.ties\.k: __replace__ replaces a mapping, but the base's value is 0\.2"):
        overlay(base, {"merge": {"ties": {"k": {"__replace__": True}}}})
    with pytest.raises(MergeflowError, match=r"finetune\.reviews\.__replace__: only directly under a key of the base"):
        overlay(base, {"finetune": {"__replace__": True, "reviews": {"__replace__": True, "lr": 3}}})


def test_every_profile_resolves_to_valid_params_and_writes_what_it_resolves_to(root: Path, tmp_path: Path) -> None:
    profiles = sorted((root / "profiles").glob("*.yaml"))
    assert {p.stem for p in profiles} >= {"backbone", "full-analysis", "glue7", "smoke", "text6", "text_smoke"}
    for profile in profiles:
        assert "extends" in yaml.safe_load(profile.read_text()), f"{profile.name}: an overlay lists only what it changes"
        resolved = resolve_profile(profile)
        params = parse_params(resolved, str(profile))  # also checks the keys inside __replace__ blocks
        write_profile(profile, tmp_path / "params.yaml")
        written = (tmp_path / "params.yaml").read_text()
        assert "__replace__" not in written and "extends" not in yaml.safe_load(written)
        assert yaml.safe_load(written) == resolved, profile.name
        assert load_params(profile) == params  # `--params profiles/NAME.yaml` resolves the overlay too


def test_whole_profiles_are_copied_byte_for_byte(root: Path, tmp_path: Path) -> None:
    write_profile(root / "params.yaml", tmp_path / "params.yaml")  # params.yaml is the whole base of the overlays
    assert (tmp_path / "params.yaml").read_bytes() == (root / "params.yaml").read_bytes()
    write_profile(root / "profiles" / "full-analysis.yaml", tmp_path / "full.yaml")
    assert yaml.safe_load((tmp_path / "full.yaml").read_text()) == resolve_profile(root / "profiles" / "full-analysis.yaml")


@pytest.mark.parametrize("stage", ["prepare", "results", "calibrate", "analyze_routing", "report", "merge"])
def test_light_stages_do_not_import_the_model_libraries(root: Path, stage: str) -> None:
    """open_clip (torchvision, timm, transformers), peft and scipy.stats cost seconds per stage start; stages that
    only do tensor math, or build a model only when a grid needs it (merge), must not import them up front."""
    heavy = ("open_clip", "torchvision", "timm", "transformers", "peft", "scipy.stats")
    code = f"import sys, tasks.{stage}; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"tasks.{stage} imports {loaded} at start-up"
