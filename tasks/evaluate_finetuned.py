"""Stage evaluate_finetuned: each expert on its own task's test split (the upper reference of every merge)."""

from __future__ import annotations

import argparse

from mergeflow.evaluation.accuracy import accuracy
from mergeflow.evaluation.results import result_rows, write_part
from mergeflow.params import Params
from mergeflow.statedict.io import load_tensors
from tasks._artifacts import classifier_for, load_split_tensors
from tasks._paths import RESULT_PARTS, expert_path
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    scores = {}
    device, autocast = stage_runtime(params)
    for task in params.suite.tasks:
        _, images, labels = load_split_tensors(task, "test")
        classifier = classifier_for(params, task, load_tensors(expert_path(task)))
        scores[task] = accuracy(classifier, images, labels, params.evaluate.batch_size, device, autocast)
        print(f"finetuned {task}: accuracy {scores[task]:.4f}")
    write_part(RESULT_PARTS / "finetuned.parquet", result_rows(params.suite.name, "finetuned", "oracle", "accuracy", scores))


if __name__ == "__main__":
    run_stage("evaluate_finetuned", "Test accuracy of every task's expert on its own task.", build)
