"""Stage prepare@TASK: build one task's train/val/test splits of the offline suite as Parquet."""

from __future__ import annotations

import argparse

import numpy as np

from mergeflow.data.image_table import ImageSplit, write_split
from mergeflow.data.suites import task_spec
from mergeflow.data.task_spec import SPLITS
from mergeflow.params import Params
from tasks._paths import split_path
from tasks._stage import require_task, run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    require_task(params, args.item)
    spec = task_spec(params.suite.name, args.item)
    splits = {}
    for split in SPLITS:  # build every split before writing any, so a failure leaves no partial task behind
        n = getattr(params.suite.samples, split)
        images, labels, ids = spec.make_split(split, n, params.suite.seed, params.suite.image_size)
        splits[split] = ImageSplit(spec.name, split, images, labels.astype(np.int64), ids, list(spec.class_names))
    for split, data in splits.items():
        write_split(split_path(spec.name, split), data)
        print(f"{spec.name}/{split}: {len(data.labels)} images, {spec.num_classes} classes")


if __name__ == "__main__":
    run_stage("prepare", "Generate one task's splits (deterministic, offline) into artifacts/data/TASK/.", build,
              item_help="task name from suite.tasks")
