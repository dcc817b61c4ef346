"""Stage finetune@TASK: full fine-tuning of the image encoder on one task, head frozen; saves the expert and its
task vector tau = theta_expert - theta_pretrained over the encoder's floating-point entries (one stage, not two:
the subtraction costs milliseconds, a stage's start-up seconds)."""

from __future__ import annotations

import argparse

import torch

from mergeflow.params import Params
from mergeflow.runtime.device import to_cpu
from mergeflow.statedict.io import save_tensors
from mergeflow.statedict.task_vectors import task_vector, without_frozen
from mergeflow.training.finetune import finetune_encoder
from mergeflow.training.loop import OptimConfig
from tasks._artifacts import classifier_for, load_split_tensors
from tasks._merge_inputs import load_base_visual
from tasks._paths import expert_path, task_vector_path
from tasks._runtime import stage_runtime
from tasks._stage import require_task, run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    require_task(params, args.item)
    checkpoint = params.finetune[args.item].checkpoint
    if checkpoint is not None and params.backbone.architecture == "sequence_classifier":
        expert = brought_sequence_classifier(args.item, checkpoint)
    elif checkpoint is not None:
        expert = brought_expert(args.item, checkpoint)
    else:
        expert = trained_expert(params, args.item)
    # task_vector checks the expert against the base's keys, shapes and dtypes (a brought one's error names its source)
    origin = f"finetune.{args.item}.checkpoint {checkpoint}" if checkpoint is not None else f"the expert of {args.item}"
    tau = task_vector(expert, load_base_visual(), expert_name=origin)
    if params.backbone.frozen_in_merging:  # checked before anything is written
        kept = without_frozen(tau, params.backbone.frozen_in_merging)
        print(f"task vector {args.item}: {len(tau) - len(kept)} entries frozen at theta_0 (backbone.frozen_in_merging)")
        tau = kept
    save_tensors(expert_path(args.item), expert, metadata={"task": args.item})
    norm = sum(float(v.float().pow(2).sum()) for v in tau.values()) ** 0.5
    print(f"task vector {args.item}: {len(tau)} entries, {sum(v.numel() for v in tau.values())} parameters, L2 norm {norm:.4f}")
    save_tensors(task_vector_path(args.item), tau, metadata={"task": args.item})


def trained_expert(params: Params, task: str) -> dict[str, torch.Tensor]:
    device, autocast = stage_runtime(params)
    _, images, labels = load_split_tensors(task, "train")
    classifier = classifier_for(params, task)
    config = OptimConfig(**params.finetune[task].optim())
    losses = finetune_encoder(classifier, images, labels, config, description=f"finetune {task}", device=device,
                              autocast=autocast)
    print(f"finetune {task}: loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps")
    return to_cpu(classifier.encoder.state_dict())


def brought_expert(task: str, checkpoint: str) -> dict[str, torch.Tensor]:
    """finetune.<task>.checkpoint, converted to the base tower's keys and checked to fit it (no training)."""
    from mergeflow.checkpoints.experts import load_brought_expert

    expert = load_brought_expert(checkpoint, load_base_visual(), f"finetune.{task}.checkpoint")
    print(f"finetune {task}: brought expert {checkpoint} ({len(expert)} tensors), not trained")
    return expert


def brought_sequence_classifier(task: str, checkpoint: str) -> dict[str, torch.Tensor]:
    """A fine-tuned ``AutoModelForSequenceClassification``'s body (its head is the heads stage's business); ``build``
    checks it against the base body."""
    from mergeflow.language.sequence_classifiers import load_sequence_classifier, split_state

    body, _, _ = split_state(load_sequence_classifier(checkpoint))
    print(f"finetune {task}: brought sequence classifier {checkpoint} ({len(body)} body tensors), not trained")
    return body


if __name__ == "__main__":
    run_stage("finetune", "Fine-tune the image encoder on one task (AdamW, warm-up + cosine, frozen head); write its task vector.", build,
              item_help="task name from suite.tasks")
