"""Stage merge@METHOD: merge the task vectors with one method; write the merged model or its mask bank, and its
task-known test accuracy (reports/parts/merged/METHOD.parquet).

Grids (``<name>_grid``) are chosen here on the validation splits, never on test: TALL's ``lam`` per task, every
other one (the scales, Consensus' ``lam``) as one value for all tasks by the mean validation accuracy.
"""

from __future__ import annotations

import argparse

import torch

from mergeflow.evaluation.accuracy import accuracy
from mergeflow.evaluation.results import result_rows, write_part
from mergeflow.merging.bank import MaskBank, reconstruct
from mergeflow.merging.common import StateDict, add_to_base
from mergeflow.merging.registry import get_method, resolve_hyperparameters
from mergeflow.merging_io import load_merged, save_mask_bank, save_merged_model, task_encoder
from mergeflow.params import Params
from mergeflow.selection import SharedSelection, describe, merge_selecting
from tasks._artifacts import classifier_for, load_split_tensors
from tasks._merge_inputs import load_base_visual, load_task_vectors
from tasks._paths import merged_part_path, merged_path
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    method, settings = args.item, params.merge.method(args.item)
    device, autocast = stage_runtime(params)
    base = load_base_visual()
    task_vectors = load_task_vectors(params.suite.tasks)
    validation: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # read only when a grid needs it
    # A shared grid scores one merged delta on every task: add it to theta_0 once. The delta itself is held (not
    # its id, which a later delta may reuse once this one is freed) and compared by identity.
    encoded: list[tuple[StateDict, StateDict]] = []

    def validation_accuracy(candidate: StateDict | MaskBank, task: str) -> float:
        if isinstance(candidate, MaskBank):
            encoder = reconstruct(base, candidate, task)
        else:
            if not encoded or encoded[0][0] is not candidate:
                encoded[:] = [(candidate, add_to_base(base, candidate))]
            encoder = encoded[0][1]
        if task not in validation:
            validation[task] = load_split_tensors(task, "val")[1:]
        images, labels = validation[task]
        return accuracy(classifier_for(params, task, encoder), images, labels, params.evaluate.batch_size, device, autocast)

    result, selections = merge_selecting(method, task_vectors, settings.hyperparameters, settings.grids, validation_accuracy,
                                         device=device)
    encoded.clear()
    fixed = {key: value for key, value in resolve_hyperparameters(method, settings.hyperparameters).items()
             if key not in settings.grids}
    shared = {name: selection for name, selection in selections.items() if isinstance(selection, SharedSelection)}
    info = {
        "hyperparameters": fixed,
        "grids": settings.grids,
        "tasks": params.suite.tasks,
        "selected_per_task": {name: selection.chosen for name, selection in selections.items() if name not in shared},
        "selected": {name: selection.chosen for name, selection in shared.items()},  # one value for every task
        "validation_scores": {name: {task: {str(v): s for v, s in scores.items()} for task, scores in selection.scores.items()}
                              for name, selection in selections.items()},
        "validation_mean": {name: {str(v): s for v, s in selection.averages.items()} for name, selection in shared.items()},
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
    write_test_scores(params, method, base, device, autocast)


def write_test_scores(params: Params, method: str, base: StateDict, device: torch.device, autocast: str) -> None:
    """Task-known (router=oracle) test accuracy of the stored artifact, read back as every consumer reads it: mask
    methods score each task's own reconstruction, single-model methods the one merged model, with each task's head."""
    merged, _ = load_merged(merged_path(method))
    scores = {}
    for task in params.suite.tasks:
        _, images, labels = load_split_tensors(task, "test")
        classifier = classifier_for(params, task, task_encoder(merged, base, task))
        scores[task] = accuracy(classifier, images, labels, params.evaluate.batch_size, device, autocast)
    print(f"{method} test accuracy (task known): " + ", ".join(f"{task} {value:.4f}" for task, value in scores.items()))
    write_part(merged_part_path(method), result_rows(params.suite.name, method, "oracle", "accuracy", scores))


if __name__ == "__main__":
    run_stage("merge", "Merge the task vectors with one method from merge.methods.", build,
              item_help="method name from merge.methods")
