"""params.yaml validation: every mistake stops with one message that names the key; stages exit 2 and write nothing."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mergeflow.errors import MergeflowError
from mergeflow.params import load_params, parse_params


@pytest.fixture
def raw(root: Path) -> dict:
    return yaml.safe_load((root / "params.yaml").read_text())


def test_shipped_params_and_profiles_are_valid(root: Path) -> None:
    assert len(load_params(root / "params.yaml").suite.tasks) >= 8
    load_params(root / "profiles" / "smoke.yaml")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda p: p["finetune"]["shapes"].__setitem__("lr", "fast"), r"finetune\.shapes\.lr: .*valid number"),
        (lambda p: p["pretrain"].__setitem__("steps", 2.5), r"pretrain\.steps: .*valid integer"),
        (lambda p: p["suite"].__setitem__("sead", 1), r"suite\.sead: unknown key"),
        (lambda p: p.__setitem__("merge_everything", True), r"merge_everything: unknown key"),
        (lambda p: p["suite"]["tasks"].append("mnist"), r"suite\.tasks: unknown task 'mnist'"),
        (lambda p: p["finetune"].pop("shapes"), r"finetune\.shapes: missing"),
        (lambda p: p["finetune"].__setitem__("svhn", p["finetune"]["shapes"]), r"finetune\.svhn: not a task"),
        (lambda p: p["suite"]["samples"].__setitem__("test", 0), r"suite\.samples\.test: .*greater than 0"),
        (lambda p: p["backbone"].pop("model"), r"backbone\.model: Field required"),
    ],
)
def test_mistakes_name_the_key(raw: dict, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    bad = copy.deepcopy(raw)
    edit(bad)
    with pytest.raises(MergeflowError, match=expected):
        parse_params(bad)


def test_invalid_yaml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("suite: [unclosed\n")
    with pytest.raises(MergeflowError, match="not valid YAML"):
        load_params(path)


def test_stage_exits_2_with_one_message_and_writes_nothing(root: Path, raw: dict, tmp_path: Path) -> None:
    raw["finetune"]["shapes"]["lr"] = "fast"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "tasks.prepare", "shapes", "--params", str(tmp_path / "params.yaml")],
                          cwd=tmp_path, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "finetune.shapes.lr" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "artifacts").exists()


def test_cli_check_params(root: Path) -> None:
    from mergeflow.cli import main

    assert main(["check-params", str(root / "params.yaml")]) == 0
    assert main(["check-params", str(root / "no-such.yaml")]) == 2
