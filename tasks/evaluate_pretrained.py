"""Stage evaluate_pretrained: the base model with each task's frozen head, on each task's test split."""

from __future__ import annotations

import argparse

from mergeflow.evaluation.accuracy import accuracy
from mergeflow.evaluation.results import result_rows, write_part
from mergeflow.params import Params
from tasks._artifacts import classifier_for, load_split_tensors
from tasks._paths import RESULT_PARTS
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    scores = {}
    device, autocast = stage_runtime(params)
    for task in params.suite.tasks:
        _, images, labels = load_split_tensors(task, "test")
        scores[task] = accuracy(classifier_for(params, task), images, labels, params.evaluate.batch_size, device, autocast)
        print(f"pretrained {task}: accuracy {scores[task]:.4f}")
    write_part(RESULT_PARTS / "pretrained.parquet", result_rows(params.suite.name, "pretrained", "oracle", "accuracy", scores))


if __name__ == "__main__":
    run_stage("evaluate_pretrained", "Test accuracy of the pretrained model (zero-shot heads) on every task.", build)
