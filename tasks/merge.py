"""Stage merge@METHOD: merge the task vectors with one method; write the merged model or its mask bank.

Per-task grids (TALL's ``lam_grid``) are chosen here on each task's validation split, never on test.
"""

from __future__ import annotations

import argparse

import torch

from mergeflow.merging.bank import MaskBank, reconstruct
from mergeflow.merging.common import StateDict, add_to_base
from mergeflow.merging.registry import get_method, resolve_hyperparameters
from mergeflow.merging_io import save_mask_bank, save_merged_model
from mergeflow.params import Params
from mergeflow.selection import describe, merge_selecting_per_task
from tasks._merge_inputs import load_base_visual, load_task_vectors
from tasks._paths import merged_path
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    method, settings = args.item, params.merge.method(args.item)
    base = load_base_visual()
    task_vectors = load_task_vectors(params.suite.tasks)
    validation: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # read only when a grid needs it

    def validation_accuracy(candidate: StateDict | MaskBank, task: str) -> float:
        # Imported here: models (open_clip) cost seconds to import and only per-task grids need them.
        from mergeflow.evaluation.accuracy import accuracy
        from tasks._artifacts import classifier_for, load_split_tensors

        encoder = reconstruct(base, candidate, task) if isinstance(candidate, MaskBank) else add_to_base(base, candidate)
        if task not in validation:
            validation[task] = load_split_tensors(task, "val")[1:]
        images, labels = validation[task]
        return accuracy(classifier_for(params, task, encoder), images, labels, params.evaluate.batch_size)

    result, selections = merge_selecting_per_task(
        method, task_vectors, settings.hyperparameters, settings.per_task_grids, validation_accuracy
    )
    fixed = {key: value for key, value in resolve_hyperparameters(method, settings.hyperparameters).items()
             if key not in settings.per_task_grids}
    info = {
        "hyperparameters": fixed,
        "per_task_grids": settings.per_task_grids,
        "tasks": params.suite.tasks,
        "selected_per_task": {name: selection.chosen for name, selection in selections.items()},
        "validation_scores": {name: {task: {str(v): s for v, s in scores.items()} for task, scores in selection.scores.items()}
                              for name, selection in selections.items()},
    }
    for name, selection in selections.items():
        print("\n".join(f"{method} {line}" for line in describe(selection, name)))
    if get_method(method).returns == "bank":
        assert isinstance(result, MaskBank)
        save_mask_bank(merged_path(method), result, method, info)
        kept = {task: sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
                for task, masks in result.masks.items()}
        print(f"{method}: mask bank, kept fraction per task " + ", ".join(f"{t} {f:.3f}" for t, f in kept.items()))
    else:
        assert not isinstance(result, MaskBank)
        save_merged_model(merged_path(method), add_to_base(base, result), method, info)
        print(f"{method}: one merged model for {len(task_vectors)} tasks")


if __name__ == "__main__":
    run_stage("merge", "Merge the task vectors with one method from merge.methods.", build,
              item_help="method name from merge.methods")
