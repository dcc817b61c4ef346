"""Stage merge@METHOD: merge the task vectors with one method; write the merged model or its mask bank.

Grids (``<name>_grid``) are chosen here on the validation splits, never on test: TALL's ``lam`` per task, every
other one (the scales, Consensus' ``lam``) as one value for all tasks by the mean validation accuracy.
"""

from __future__ import annotations

import argparse

import torch

from mergeflow.merging.bank import MaskBank, reconstruct
from mergeflow.merging.common import StateDict, add_to_base
from mergeflow.merging.registry import get_method, resolve_hyperparameters
from mergeflow.merging_io import save_mask_bank, save_merged_model
from mergeflow.params import Params
from mergeflow.selection import SharedSelection, describe, merge_selecting
from tasks._merge_inputs import load_base_visual, load_task_vectors
from tasks._paths import merged_path
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    method, settings = args.item, params.merge.method(args.item)
    base = load_base_visual()
    task_vectors = load_task_vectors(params.suite.tasks)
    validation: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # read only when a grid needs it
    # A shared grid scores one merged delta on every task: add it to theta_0 once. The delta itself is held (not
    # its id, which a later delta may reuse once this one is freed) and compared by identity.
    encoded: list[tuple[StateDict, StateDict]] = []
    # The classifier is built once (open_clip's create_model costs seconds, more than scoring a candidate), then
    # each candidate's weights are loaded into it strictly (every key, so nothing of an earlier one remains) and the
    # task's head swapped in.
    built: list[torch.nn.Module] = []
    heads: dict[str, torch.Tensor] = {}

    def classifier(task: str, encoder: StateDict) -> torch.nn.Module:
        from tasks._artifacts import classifier_for, load_head

        if not built:
            built.append(classifier_for(params, task, encoder))
            return built[0]
        model = built[0]
        model.encoder.load_state_dict(encoder, strict=True)
        if task not in heads:
            heads[task] = load_head(task)
        model.head = heads[task]
        return model

    def validation_accuracy(candidate: StateDict | MaskBank, task: str) -> float:
        # Imported here: models (open_clip) cost seconds to import and only grids need them.
        from mergeflow.evaluation.accuracy import accuracy
        from tasks._artifacts import load_split_tensors

        if isinstance(candidate, MaskBank):
            encoder = reconstruct(base, candidate, task)
        else:
            if not encoded or encoded[0][0] is not candidate:
                encoded[:] = [(candidate, add_to_base(base, candidate))]
            encoder = encoded[0][1]
        if task not in validation:
            validation[task] = load_split_tensors(task, "val")[1:]
        images, labels = validation[task]
        return accuracy(classifier(task, encoder), images, labels, params.evaluate.batch_size)

    result, selections = merge_selecting(method, task_vectors, settings.hyperparameters, settings.grids, validation_accuracy)
    encoded.clear()
    built.clear()
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


if __name__ == "__main__":
    run_stage("merge", "Merge the task vectors with one method from merge.methods.", build,
              item_help="method name from merge.methods")
