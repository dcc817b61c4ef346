"""Stage finetune_lora@TASK: a LoRA expert of the image encoder (peft, adapters only; head frozen), saved in peft's
format under artifacts/lora/experts/TASK."""

from __future__ import annotations

import argparse

from torch import nn

from mergeflow.lora.adapters import LoraSpec, add_lora, save_adapter, write_adapter
from mergeflow.params import Params
from mergeflow.seeding import seed_everything
from mergeflow.training.finetune import finetune_encoder
from mergeflow.training.loop import OptimConfig
from tasks._artifacts import classifier_for, load_split_tensors
from tasks._paths import lora_adapter_dir
from tasks._runtime import stage_runtime
from tasks._stage import require_task, run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    require_task(params, args.item)
    device, autocast = stage_runtime(params)
    adapter, train = params.lora.adapter, params.lora.train
    _, images, labels = load_split_tensors(args.item, "train")
    classifier = classifier_for(params, args.item)
    targets = tuple(adapter.targets)
    if targets == ("mlp",):  # the MLP linears of a BERT-style text encoder, named per layer
        from mergeflow.models.text_encoder import mlp_lora_targets

        targets = mlp_lora_targets(classifier.encoder)
    spec = LoraSpec(adapter.rank, adapter.alpha, adapter.dropout, targets)
    checkpoint = params.lora.checkpoints.get(args.item)
    if checkpoint is not None:
        bring_adapter(args.item, checkpoint, classifier.encoder, spec)
        return
    seed_everything(train.seed)  # LoRA A is initialised randomly at injection
    add_lora(classifier.encoder, spec)
    losses = finetune_encoder(classifier, images, labels, OptimConfig(**train.model_dump()), description=f"finetune_lora {args.item}",
                              device=device, autocast=autocast)
    print(f"finetune_lora {args.item}: loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps")
    save_adapter(lora_adapter_dir(args.item), classifier.encoder.cpu(), spec)


def bring_adapter(task: str, checkpoint: str, encoder: nn.Module, spec: LoraSpec) -> None:
    """lora.checkpoints.<task>: a peft adapter folder, checked to fit the base encoder and lora.adapter, stored as the
    task's expert (no training). The target list is the adapter's own layers, so serving adapts exactly those."""
    from mergeflow.language.peft_experts import fit_to_encoder, read_lora_expert

    expert = read_lora_expert(checkpoint, name=task)
    state = fit_to_encoder(expert, encoder, spec.rank, spec.scaling)
    write_adapter(lora_adapter_dir(task), state, spec)
    print(f"finetune_lora {task}: brought the peft adapter {checkpoint} ({len(expert.factors)} layers), not trained")


if __name__ == "__main__":
    run_stage("finetune_lora", "Train a LoRA expert of the image encoder on one task (peft; adapters only, frozen head).",
              build, item_help="task name from suite.tasks")
