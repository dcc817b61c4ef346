"""profiles/tiny_real.yaml through the real DVC graph: real data by reference (an ImageFolder of PNGs, a
``save_to_disk`` folder), a Hugging Face CLIP backbone (``save_pretrained``) converted at ``pretrain``, one brought
TALL-masks expert and one trained expert; then a changed checkpoint and a changed merge hyperparameter rerun only
what they affect. Everything it reads is built by tests/real/tiny_real_kit.py in the public formats."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the pipeline kit
from pipeline_kit import copy_project, dvc, ran  # noqa: E402
from tiny_real_kit import EXPERT, EXPERT_B, build_tiny_real  # noqa: E402

from mergeflow.data.real_manifest import read_manifest  # noqa: E402

pytestmark = pytest.mark.pipeline


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _stale(project: Path) -> set[str]:
    return set(re.findall(r"^(\S+):$", dvc(project, "status"), flags=re.MULTILINE))


def _edit(project: Path, change) -> dict:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    change(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("tiny_real"), "tiny_real.yaml")
    build_tiny_real(root)
    return root


@pytest.fixture(scope="module")
def cold(project: Path) -> set[str]:
    return ran(dvc(project, "repro"))


def test_cold_run_builds_every_stage_from_the_real_formats(project: Path, cold: set[str]) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    tasks = params["suite"]["tasks"]
    assert {f"prepare@{t}" for t in tasks} | {f"finetune@{t}" for t in tasks} | {"pretrain", "heads", "report"} <= cold
    assert {f"merge@{m}" for m in params["merge"]["methods"]} <= cold
    # prepare wrote manifests by reference (the validation carve, the caps, the dataset's class names), not pixels
    shapes = {split: read_manifest(project / "artifacts" / "data" / "shapes" / f"{split}.parquet") for split in ("train", "val", "test")}
    assert [len(m.rows) for m in shapes.values()] == [16, 4, 8]
    assert shapes["train"].source_split == shapes["val"].source_split == "train"
    assert not set(shapes["train"].rows) & set(shapes["val"].rows)
    assert shapes["train"].class_names == ["circle", "square"] and shapes["train"].content_hash.startswith("sha256:")
    colors = read_manifest(project / "artifacts" / "data" / "colors" / "train.parquet")
    assert colors.class_names == ["red", "blue", "green"] and colors.reference["kind"] == "disk"
    results = pd.read_parquet(project / "reports" / "results.parquet")
    accuracy = results[results["metric"] == "accuracy"]
    assert set(results["suite"]) == {"tiny_real", "tiny_real-lora"} and set(accuracy["task"]) >= set(tasks)
    assert {"pretrained", "finetuned", *params["merge"]["methods"]} <= set(accuracy["method"])
    assert accuracy["value"].between(0, 1).all()
    assert (project / "reports" / "report.md").exists()


def test_second_run_is_a_no_op(project: Path, cold: set[str]) -> None:
    assert ran(dvc(project, "repro")) == set()


def test_a_changed_brought_checkpoint_reruns_only_that_experts_chain(project: Path, cold: set[str]) -> None:
    colors_expert = _md5(project / "artifacts" / "experts" / "colors.safetensors")
    shapes_expert = _md5(project / "artifacts" / "experts" / "shapes.safetensors")
    params = _edit(project, lambda p: p["finetune"]["shapes"].update(checkpoint=str(EXPERT_B)))
    assert _stale(project) == {"finetune@shapes"}  # only the stage whose own param changed; the rest follow its outputs
    executed = ran(dvc(project, "repro", "finetune@shapes", "evaluate_finetuned"))
    assert executed == {"finetune@shapes", "evaluate_finetuned"}
    assert _md5(project / "artifacts" / "experts" / "shapes.safetensors") != shapes_expert
    assert _md5(project / "artifacts" / "experts" / "colors.safetensors") == colors_expert
    readers = {f"merge@{m}" for m in params["merge"]["methods"]} | {f"adapt@{m}" for m in params["adapt"]["methods"]}
    readers |= {"analyze_adaptation"}
    assert readers <= _stale(project) <= readers | {"results"}
    _edit(project, lambda p: p["finetune"]["shapes"].update(checkpoint=str(EXPERT)))  # back, for the next test
    dvc(project, "repro", "finetune@shapes", "evaluate_finetuned")  # run again, or restored from DVC's run cache
    assert _md5(project / "artifacts" / "experts" / "shapes.safetensors") == shapes_expert


def test_one_merge_hyperparameter_reruns_only_that_method(project: Path, cold: set[str]) -> None:
    dvc(project, "repro")  # settle what the previous test left stale (its outputs are back to the cold run's)
    _edit(project, lambda p: p["merge"]["tall_ta"].update(lam_grid=[0.2, 0.4]))
    assert _stale(project) == {"merge@tall_ta"}
    assert ran(dvc(project, "repro", "--single-item", "merge@tall_ta")) == {"merge@tall_ta"}
