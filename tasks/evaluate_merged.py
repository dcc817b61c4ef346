"""Stage evaluate_merged@METHOD: task-known (router=oracle) test accuracy of one merged artifact on every task.

Mask methods evaluate each task's own reconstruction; single-model methods the one merged model; always with the
task's frozen head.
"""

from __future__ import annotations

import argparse

from mergeflow.errors import MergeflowError
from mergeflow.evaluation.accuracy import accuracy
from mergeflow.evaluation.results import result_rows, write_part
from mergeflow.merging_io import load_merged, task_encoder
from mergeflow.params import Params
from tasks._artifacts import classifier_for, load_split_tensors
from tasks._merge_inputs import load_base_visual
from tasks._paths import merged_part_path, merged_path
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    method = args.item
    params.merge.method(method)
    merged, metadata = load_merged(merged_path(method))
    if metadata["method"] != method:
        raise MergeflowError(f"{merged_path(method)} holds method {metadata['method']!r}, expected {method!r}")
    base = load_base_visual()
    scores = {}
    for task in params.suite.tasks:
        _, images, labels = load_split_tensors(task, "test")
        classifier = classifier_for(params, task, task_encoder(merged, base, task))
        scores[task] = accuracy(classifier, images, labels, params.evaluate.batch_size)
        print(f"{method} {task}: accuracy {scores[task]:.4f}")
    write_part(merged_part_path(method), result_rows(params.suite.name, method, "oracle", "accuracy", scores))


if __name__ == "__main__":
    run_stage("evaluate_merged", "Task-known test accuracy of one merging method on every task.", build,
              item_help="method name from merge.methods")
