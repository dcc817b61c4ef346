"""Stage analyze_adaptation: the AdaRank analyses of the report.

- Table 6 shape: AdaRank with lambda only and with masks only, for each base in adapt.analysis.ablation (the
  "both" rows are adapt@'s own models, evaluated by evaluate_static).
- Table 7 shape: AdaRank adapted on 1 % / 10 % of the test data (adapt.analysis.data_fractions).
- Fig. 4b shape: per layer, kept rank vs the rank holding 95 % of the spectral energy; Fig. 10: final masks.
- The steps each adapt@ ran and its validation-accuracy trajectory, from adapt@'s records (the seconds per step
  are not here: adapt@ writes them to reports/timings, uncached, and the report joins them).
Every variant reports its final step's test accuracy (no step selection). Writes reports/adaptation/*.parquet.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd
import torch

from mergeflow.adaptation.ranks import energy_rank
from mergeflow.atomic import atomic_path
from mergeflow.errors import MergeflowError
from mergeflow.evaluation.accuracy import accuracy
from mergeflow.params import Params
from mergeflow.statedict.io import read_safetensors
from tasks._adapt_inputs import run_adaptation
from tasks._artifacts import classifier_for, load_split_tensors
from tasks._paths import ADAPTATION_ANALYSIS, adapt_record_path
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def _write(name: str, frame: pd.DataFrame) -> None:
    with atomic_path(ADAPTATION_ANALYSIS / f"{name}.parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def _test_accuracy(params: Params, state: dict, device: torch.device, autocast: str) -> dict[str, float]:
    scores = {}
    for task in params.suite.tasks:
        _, images, labels = load_split_tensors(task, "test")
        scores[task] = accuracy(classifier_for(params, task, state), images, labels, params.evaluate.batch_size, device, autocast)
    return scores


def _variants(params: Params, device: torch.device, autocast: str) -> list[dict[str, object]]:
    analysis, rows = params.adapt.analysis, []
    runs: list[tuple[str, str | None, float | None]] = [
        (method, learn, None) for method in analysis.ablation for learn in ("lambda", "masks")
    ]
    runs += [(analysis.data_method, None, fraction) for fraction in analysis.data_fractions]
    for method, learn, fraction in runs:
        _, result, _ = run_adaptation(params, method, learn=learn, fraction=fraction, device=device, autocast=autocast)
        if learn:
            variant = f"{learn} only"
        elif fraction is not None:
            variant = f"{100 * fraction:g}% of test data"
        else:
            raise MergeflowError(f"{method}: an adaptation variant learns only lambda or masks, or uses a data fraction")
        scores = _test_accuracy(params, result.state, device, autocast)
        print(f"analyze_adaptation: {method} ({variant}): accuracy {sum(scores.values()) / len(scores):.4f}")
        rows += [{"method": method, "variant": variant, "task": task, "accuracy": value} for task, value in scores.items()]
    return rows


def _records(params: Params) -> tuple[list[dict[str, object]], list[dict[str, object]], list[dict[str, object]]]:
    """(ranks, masks of the first/middle/last block, steps and validation trajectory) from adapt@'s records."""
    ranks, masks, steps = [], [], []
    for method in params.adapt.methods:
        tensors, metadata = read_safetensors(adapt_record_path(method))
        steps.append({"method": method, "steps": len(json.loads(metadata["losses"])),
                      "validation_accuracy": metadata.get("validation_accuracy", "{}")})
        tasks = json.loads(metadata["tasks"])
        keys = [name.removeprefix("mask/") for name in tensors if name.startswith("mask/")]
        blocks = sorted({key.split(".resblocks.")[1].split(".")[0] for key in keys if ".resblocks." in key}, key=int)
        shown = {blocks[0], blocks[len(blocks) // 2], blocks[-1]} if blocks else set()
        for key in keys:
            mask, values = tensors[f"mask/{key}"].bool(), tensors[f"values/{key}"]
            intrinsic = energy_rank(values)
            for index, task in enumerate(tasks):
                ranks.append({"method": method, "key": key, "task": task, "kept": int(mask[index].sum()),
                              "intrinsic_95": int(intrinsic[index]), "full": int(mask.shape[1])})
            block = key.split(".resblocks.")[1].split(".")[0] if ".resblocks." in key else None
            if block in shown:
                masks += [{"method": method, "key": key, "task": task, "component": component, "kept": bool(mask[t, component])}
                          for t, task in enumerate(tasks) for component in range(mask.shape[1])]
    return ranks, masks, steps


def build(args: argparse.Namespace, params: Params) -> None:
    device, autocast = stage_runtime(params)
    _write("variants", pd.DataFrame(_variants(params, device, autocast), columns=["method", "variant", "task", "accuracy"]))
    ranks, masks, steps = _records(params)
    _write("ranks", pd.DataFrame(ranks, columns=["method", "key", "task", "kept", "intrinsic_95", "full"]))
    _write("masks", pd.DataFrame(masks, columns=["method", "key", "task", "component", "kept"]))
    _write("steps", pd.DataFrame(steps, columns=["method", "steps", "validation_accuracy"]))
    print("analyze_adaptation: steps and validation accuracy\n" + pd.DataFrame(steps).to_string(index=False))


if __name__ == "__main__":
    run_stage("analyze_adaptation", "AdaRank analyses: lambda/mask ablation, amount of test data, ranks, masks, steps.", build)
