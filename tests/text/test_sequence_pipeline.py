"""Sequence classifiers through the real DVC stages (profiles/tiny_glue_roberta.yaml, tiny_glue_gpt2.yaml): GLUE's
SST-2 and MRPC in GLUE's format, tiny random RoBERTa / GPT-2 bases and experts in the public Hugging Face formats
(tests/text/sequence_kit.py). A brought expert's body is merged and its own head scores its task, so the pipeline's
fine-tuned accuracy of that task is the Hugging Face model's own on the prepared test tokens; a task without a brought
head gets a probe and is fine-tuned here. Merged, routed (RoBERTa) and adapted (AdaRank) rows are produced."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from glue_copy_kit import build_glue_copies
from pipeline_kit import copy_project, dvc, project_env, ran, run
from safetensors import safe_open
from sequence_kit import tiny_base, tiny_expert

from mergeflow.language.sequence_classifiers import load_sequence_classifier
from mergeflow.models.text_backbone import load_text_tokenizer
from mergeflow.statedict.io import load_tensors

pytestmark = pytest.mark.pipeline

# RoBERTa: merges, AdaRank and MAD routing over module heads; GPT-2: its last-token pooling and brought heads through
# the merges and AdaRank. LoRA over BERT-style MLPs runs in tests/text/test_text_pipeline.py, over a causal LM's in
# tests/text/test_causal_lm_pipeline.py.
TARGETS = {"roberta": ("evaluate_finetuned", "evaluate_static", "evaluate_routed@tall_ta"),
           "gpt2": ("evaluate_finetuned", "evaluate_static")}


def _project(root: Path, family: str) -> Path:
    project = copy_project(root, f"tiny_glue_{family}.yaml")
    build_glue_copies(project)
    models = project / "real_models" / family
    tiny_base(models / "base", family)
    for seed, task in enumerate(["sst2", "mrpc"], start=1):
        tiny_expert(models / "base", models / task, num_labels=2, seed=seed)
    return project


def _accuracy_rows(project: Path) -> pd.DataFrame:
    rows = pd.concat([pd.read_parquet(path) for path in (project / "reports" / "parts").rglob("*.parquet")])
    return rows[rows["metric"] == "accuracy"]


def _own_accuracy(project: Path, family: str, task: str) -> float:
    """The brought expert scored by Hugging Face itself on the pipeline's test tokens."""
    stored = load_tensors(project / "artifacts" / "data" / task / "test.tokens.safetensors")
    pad = load_text_tokenizer(project / "real_models" / family / "base").pad_token_id
    model = load_sequence_classifier(project / "real_models" / family / task)
    with torch.no_grad():
        logits = model(input_ids=stored["token_ids"], attention_mask=(stored["token_ids"] != pad).long()).logits
    return float((logits.argmax(dim=-1) == stored["labels"]).double().mean())


@pytest.mark.parametrize("family", ["roberta", "gpt2"])
def test_a_sequence_classifier_suite_runs_every_stage(tmp_path: Path, family: str) -> None:
    project = _project(tmp_path / family, family)
    output = dvc(project, "repro", *TARGETS[family])
    assert f"pretrain: stored the {family} body of real_models/{family}/base" in output
    assert "entries frozen at theta_0 (backbone.frozen_in_merging)" in output  # the embeddings, as AdaRank
    accuracy = _accuracy_rows(project)
    keys = set(zip(accuracy["suite"], accuracy["method"], accuracy["router"], strict=True))
    expected = {("tiny_glue", "finetuned", "oracle"), ("tiny_glue", "tall_ta", "mad"), ("tiny_glue", "adarank_ta", "none"),
                ("tiny_glue", "weight_averaging", "none")}
    if family == "gpt2":
        expected.remove(("tiny_glue", "tall_ta", "mad"))
    assert expected <= keys and accuracy["value"].between(0, 1).all()
    finetuned = accuracy[(accuracy["method"] == "finetuned") & (accuracy["suite"] == "tiny_glue")].set_index("task")["value"]
    brought = ["sst2"] if family == "roberta" else ["sst2", "mrpc"]
    for task in brought:  # the brought body and head, put back together, are the Hugging Face model
        assert finetuned[task] == pytest.approx(_own_accuracy(project, family, task), abs=1e-12)
    with safe_open(str(project / "artifacts" / "heads" / "mrpc.safetensors"), framework="pt") as handle:
        origin = handle.metadata()["origin"]
    assert origin.startswith("probe" if family == "roberta" else "checkpoint real_models/gpt2/mrpc")
    if family == "roberta":  # one changed recipe reruns that task's expert and what reads it, nothing upstream
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["finetune"]["mrpc"]["lr"] = 1.0e-4
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        again = ran(dvc(project, "repro", "evaluate_finetuned"))
        assert again == {"finetune@mrpc", "evaluate_finetuned"}
        _refuses_a_head_of_another_label_count(project)
    else:  # what merging leaves out reruns the task vectors (stored beside each expert), not the experts' evaluation
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["backbone"]["frozen_in_merging"] = [r"transformer\.wte\..*"]
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert ran(dvc(project, "repro", "evaluate_finetuned")) == {"finetune@sst2", "finetune@mrpc"}


def _refuses_a_head_of_another_label_count(project: Path) -> None:
    """A brought head with 3 labels for a 2-class task: exit 2, one message, the stored heads untouched."""
    models = project / "real_models" / "roberta"
    tiny_expert(models / "base", models / "three_labels", num_labels=3, seed=9)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["heads"]["checkpoints"]["mrpc"] = "real_models/roberta/three_labels"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = (project / "artifacts" / "heads" / "mrpc.safetensors").read_bytes()
    proc = run([sys.executable, "-m", "tasks.heads"], project, project_env(project), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "heads.checkpoints.mrpc: real_models/roberta/three_labels classifies into 3 labels, the task has 2" in proc.stderr
    assert (project / "artifacts" / "heads" / "mrpc.safetensors").read_bytes() == before
