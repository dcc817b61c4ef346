"""Stage regime: the benchmark's regime figures against their targets (src/mergeflow/evaluation/regime.py), printed
as one table and written to reports/regime.json for the report."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from mergeflow.atomic import write_text_atomic
from mergeflow.errors import MergeflowError
from mergeflow.evaluation.regime import format_regime_table, regime_figures, regime_record, task_identity_probe
from mergeflow.params import Params
from mergeflow.statedict.io import read_safetensors
from tasks._paths import BASE_FEATURES, REGIME, REPORTS
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    tasks = params.suite.tasks
    features, metadata = read_safetensors(BASE_FEATURES)
    if metadata.get("model") != "pretrained" or json.loads(metadata.get("tasks", "[]")) != tasks:
        raise MergeflowError(f"{BASE_FEATURES} holds features of other tasks; rerun base_features")
    try:
        results = pd.read_parquet(REPORTS / "results.parquet")
    except (OSError, ValueError) as exc:
        raise MergeflowError(f"cannot read {REPORTS / 'results.parquet'} ({exc}); run the results stage") from exc
    probe = task_identity_probe([features[f"{t}/train"] for t in tasks], [features[f"{t}/test"] for t in tasks])
    kind = params.suite.kind
    figures = regime_figures(results, params.suite.name, tasks, probe, kind, targets=params.suite.source != "real")
    record = regime_record(figures, probe, tasks, kind)
    write_text_atomic(REGIME, json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"regime of {params.suite.name} ({len(tasks)} tasks, test splits):")
    print(format_regime_table(figures, kind))
    print("task identity per task: " + ", ".join(f"{t} {100 * a:.1f}" for t, a in zip(tasks, probe.per_task, strict=True)))


if __name__ == "__main__":
    run_stage("regime", "The benchmark's regime figures (zero-shot, fine-tuned, Task Arithmetic, task identity) "
              "against their targets.", build)
