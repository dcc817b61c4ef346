"""The paper profiles (profiles/paper/*.yaml) validate as `mergeflow check-params --params` checks them, and DVC plans
their whole graph (`dvc repro --dry --force` in a scratch copy with the profile resolved as params.yaml): every task's
prepare and finetune, every merge, the routing, adaptation and report stages. Nothing runs or downloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the pipeline kit
from pipeline_kit import copy_project, dvc, project_env, ran  # noqa: E402

from mergeflow.params import load_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PAPER = sorted((ROOT / "profiles" / "paper").glob("*.yaml"))
TASKS = {"tall8": 8, "tall14": 14, "tall20": 20, "tr_vision5": 5, "glue7_real": 7, "glue5_real": 5}


def test_the_paper_profiles_exist() -> None:
    assert {p.stem for p in PAPER} == {"vit-b-32-tall8", "vit-b-32-tall14", "vit-b-32-tall20", "vit-b-16-tall8",
                                       "vit-l-14-tall8", "vit-b-16-lora", "glue7-minilm", "roberta-glue7", "gpt2-glue7",
                                       "qwen2.5-0.5b-lora-glue5"}


@pytest.mark.parametrize("profile", PAPER, ids=lambda p: p.stem)
def test_a_paper_profile_validates_and_dvc_plans_its_stages(profile: Path, tmp_path: Path) -> None:
    check = subprocess.run([sys.executable, "-m", "mergeflow.cli", "check-params", "--params", str(profile)],
                           capture_output=True, text=True, env=project_env(ROOT), cwd=ROOT)
    assert check.returncode == 0 and "valid" in check.stdout, check.stderr
    params = load_params(profile)
    assert params.suite.source == "real" and len(params.suite.tasks) == TASKS[params.suite.name]
    if params.suite.kind == "vision":  # OpenAI's CLIP towers, as the papers use them
        assert params.backbone.pretrained == "openai" and params.backbone.model.endswith("-quickgelu")
    elif params.backbone.architecture == "causal_lm":  # TR-Merging's Qwen2.5 LoRA setting, label-word heads
        assert params.backbone.pretrained == "Qwen/Qwen2.5-0.5B-Instruct" and params.lora.adapter.rank == 8
        assert params.lora.settings("task_arithmetic")["scale"] == 0.3 and params.lora.train.lr == 1e-4
    elif params.backbone.architecture == "sequence_classifier":  # AdaRank's GLUE experts, each with its own head
        assert params.backbone.pretrained is not None and params.suite.max_tokens == 128
        assert set(params.heads.checkpoints) == set(params.suite.tasks) and params.backbone.frozen_in_merging
        assert all(params.finetune[t].checkpoint == params.heads.checkpoints[t] for t in params.suite.tasks)
    else:  # the packaged MiniLM (pretrained: null), the text stages' one offline encoder
        assert params.backbone.pretrained is None and params.suite.max_tokens == 128
    project = copy_project(tmp_path / "project", f"paper/{profile.name}")
    # --force: on a cold project DVC 3.67's plain --dry stops at the first stage whose dependency is another stage's
    # output that does not exist yet (heads <- artifacts/base/clip.safetensors); forced, it lists the whole plan.
    planned = ran(dvc(project, "repro", "--dry", "--force"))
    expected = {"pretrain", "heads", "evaluate_pretrained", "evaluate_finetuned", "results", "calibrate", "report"}
    expected |= {f"prepare@{t}" for t in params.suite.tasks} | {f"finetune@{t}" for t in params.suite.tasks}
    expected |= {f"merge@{m}" for m in params.merge.methods} | {f"adapt@{m}" for m in params.adapt.methods}
    expected |= {f"finetune_lora@{t}" for t in params.suite.tasks} if params.lora.methods else set()
    assert expected <= planned
    if not params.lora.methods:  # GPT-2: no LoRA-served layers; its README command reaches every result without them
        assert not {stage for stage in ran(dvc(project, "repro", "--dry", "--force", "results", "report"))
                    if stage.startswith(("finetune_lora", "serve_lora", "calibrate_lora"))}
