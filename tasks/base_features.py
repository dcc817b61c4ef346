"""Stage base_features: the base model's embeddings of every train and test input of every task.

Cached once (they change only with the base model and the data), so the ``regime`` stage's task-identity probe
reruns in seconds whenever the results table changes instead of embedding every input again.
"""

from __future__ import annotations

import argparse
import json

from mergeflow.params import Params
from mergeflow.routing.features import extract_features
from mergeflow.statedict.io import save_tensors
from tasks._artifacts import classifier_for, load_split_tensors
from tasks._paths import BASE_FEATURES
from tasks._runtime import stage_runtime
from tasks._stage import run_stage

SPLITS = ("train", "test")


def build(args: argparse.Namespace, params: Params) -> None:
    # Any task's classifier: only its encoder (theta_0 with the model's own preprocessing) is used, not the head.
    device, autocast = stage_runtime(params)
    model = classifier_for(params, params.suite.tasks[0]).to(device).eval()
    tensors = {}
    for task in params.suite.tasks:
        for split in SPLITS:
            inputs = load_split_tensors(task, split)[1]
            tensors[f"{task}/{split}"] = extract_features(model.features, inputs, params.evaluate.batch_size, f"base {task}/{split}",
                                                         device, autocast)
    save_tensors(BASE_FEATURES, tensors, metadata={"model": "pretrained", "tasks": json.dumps(params.suite.tasks)})
    count = sum(len(value) for value in tensors.values())
    print(f"base_features: {count} inputs x {next(iter(tensors.values())).shape[1]} features ({', '.join(SPLITS)} splits)")


if __name__ == "__main__":
    run_stage("base_features", "Embeddings of every train/test input by the base model (the regime's probe).", build)
