"""Stage heads: one frozen zero-shot head per task from class-name prompts, shared by every method."""

from __future__ import annotations

import argparse

from mergeflow.data.suites import task_spec
from mergeflow.models.backbone import clip_tokenizer, load_clip
from mergeflow.models.heads import zero_shot_head
from mergeflow.params import Params
from mergeflow.statedict.io import save_tensors
from tasks._paths import BASE_MODEL, head_path
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    clip = load_clip(BASE_MODEL, params.backbone.model)
    tokenizer = clip_tokenizer(params.backbone.model)
    specs = [task_spec(params.suite.name, task) for task in params.suite.tasks]
    heads = {spec.name: zero_shot_head(clip, tokenizer, spec.class_names, spec.templates) for spec in specs}
    for spec in specs:  # every head is computed before any is written
        save_tensors(head_path(spec.name), {"head": heads[spec.name]},
                     metadata={"task": spec.name, "classes": "|".join(spec.class_names)})
        print(f"head {spec.name}: {tuple(heads[spec.name].shape)}")


if __name__ == "__main__":
    run_stage("heads", "Compute each task's frozen zero-shot classification head from the base model's text tower.", build)
