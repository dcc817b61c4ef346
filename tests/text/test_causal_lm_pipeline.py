"""A causal LM through the real DVC stages (profiles/tiny_glue_qwen.yaml: a tiny random Qwen2ForCausalLM in the
public format, GLUE's SST-2 and MRPC copies): rows are prepared in their GLUE prompts, each task's head is the LM
head's rows at its label words, full and LoRA experts are trained or brought (SST-2's peft adapter) and served (Task Arithmetic, TR-Merging,
Twin, DaWin over the LoRA experts). The pretrained model's accuracy in the pipeline is the label-word scorer's own
on the same prompts (``mergeflow.language.label_words.classify``, the full model, one prompt at a time)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from glue_copy_kit import build_glue_copies
from peft import PeftModel
from pipeline_kit import copy_project, dvc, ran
from safetensors import safe_open
from sequence_kit import tiny_causal_lm, tiny_peft_adapter

from mergeflow.data.sources.glue import glue_task
from mergeflow.language.causal_lm import load_causal_lm
from mergeflow.language.label_words import score_label_words
from mergeflow.models.text_backbone import load_text_tokenizer
from mergeflow.statedict.io import load_tensors

pytestmark = pytest.mark.pipeline

TARGET_MODULES = ("gate_proj", "up_proj", "down_proj")
TARGETS = ("evaluate_pretrained", "evaluate_finetuned", "serve_lora@experts", "serve_lora@task_arithmetic", "serve_lora@tr", "serve_lora@twin",
           "serve_lora@dawin")


def test_a_causal_lm_suite_runs_prompted_through_every_lora_method(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "qwen", "tiny_glue_qwen.yaml")
    build_glue_copies(project)
    base = project / "real_models" / "qwen" / "base"
    tiny_causal_lm(base)
    tiny_peft_adapter(base, project / "real_models" / "qwen" / "sst2_lora", TARGET_MODULES, rank=8, alpha=32.0, seed=3)
    output = dvc(project, "repro", *TARGETS)
    assert "finetune_lora sst2: brought the peft adapter real_models/qwen/sst2_lora" in output
    assert {"prepare@sst2", "heads", "finetune@mrpc", "finetune_lora@sst2", "serve_lora@dawin"} <= ran(output)
    rows = pd.concat([pd.read_parquet(path) for path in (project / "reports" / "parts").rglob("*.parquet")])
    accuracy = rows[rows["metric"] == "accuracy"]
    keys = set(zip(accuracy["suite"], accuracy["method"], accuracy["router"], strict=True))
    assert {("tiny_glue", "pretrained", "oracle"), ("tiny_glue", "finetuned", "oracle"),
            ("tiny_glue-lora", "task_arithmetic", "none"), ("tiny_glue-lora", "tr_merging", "tr"),
            ("tiny_glue-lora", "twin_merging", "twin"), ("tiny_glue-lora", "dawin", "dawin")} <= keys
    with safe_open(str(project / "artifacts" / "heads" / "mrpc.safetensors"), framework="pt") as handle:
        assert handle.metadata()["label_words"] == "no|yes"
    # the pipeline's zero-shot accuracy is the exact label-word scorer's on the prepared prompts
    tokenizer, model = load_text_tokenizer(base), load_causal_lm(base)
    pretrained = accuracy[accuracy["method"] == "pretrained"].set_index("task")["value"]
    for task in ("sst2", "mrpc"):
        stored = load_tensors(project / "artifacts" / "data" / task / "test.tokens.safetensors")
        prompts = [tokenizer.decode(row[row != tokenizer.pad_token_id]) for row in stored["token_ids"]]
        scores = score_label_words(model, tokenizer, prompts, glue_task(task).label_words)
        expected = float((scores.argmax(dim=1) == stored["labels"]).double().mean())
        assert pretrained[task] == pytest.approx(expected, abs=1e-12)
        assert prompts[0].endswith("\nAnswer:") and torch.all(stored["token_ids"][:, 0] != tokenizer.pad_token_id)
        if task == "sst2":  # the brought adapter, served as the task's expert, is peft's own model
            with_adapter = PeftModel.from_pretrained(load_causal_lm(base), project / "real_models" / "qwen" / "sst2_lora")
            scores = score_label_words(with_adapter, tokenizer, prompts, glue_task(task).label_words)
            expert = accuracy[(accuracy["suite"] == "tiny_glue-lora") & (accuracy["method"] == "finetuned")
                              & (accuracy["router"] == "oracle")].set_index("task")["value"]
            assert expert[task] == pytest.approx(float((scores.argmax(dim=1) == stored["labels"]).double().mean()), abs=1e-12)
    assert ran(dvc(project, "repro", *TARGETS)) == set()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["lora"]["tr"]["top_k"] = [1]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(dvc(project, "repro", *TARGETS)) == {"serve_lora@tr"}
