"""Stage finetune@TASK: full fine-tuning of the image encoder on one task, head frozen; saves the expert."""

from __future__ import annotations

import argparse

from mergeflow.params import Params
from mergeflow.statedict.io import save_tensors
from mergeflow.training.finetune import finetune_encoder
from mergeflow.training.loop import OptimConfig
from tasks._artifacts import classifier_for, load_split_tensors
from tasks._paths import expert_path
from tasks._stage import require_task, run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    require_task(params, args.item)
    _, images, labels = load_split_tensors(args.item, "train")
    classifier = classifier_for(params, args.item)
    config = OptimConfig(**params.finetune[args.item].model_dump())
    losses = finetune_encoder(classifier, images, labels, config, description=f"finetune {args.item}")
    print(f"finetune {args.item}: loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps")
    save_tensors(expert_path(args.item), classifier.encoder.state_dict(), metadata={"task": args.item})


if __name__ == "__main__":
    run_stage("finetune", "Fine-tune the image encoder on one task (AdamW, warm-up + cosine, frozen head).", build,
              item_help="task name from suite.tasks")
