"""Stage adapt@METHOD: test-time adaptation (AdaMerging or AdaRank) of one merged model by entropy minimisation on
unlabelled test batches; writes the final step's model (no step is selected) and what was learned.

Outputs: artifacts/merged/METHOD.safetensors (one static merged model, evaluated by evaluate_static) and
artifacts/adapt/METHOD.safetensors (final masks per key as (T, r) uint8, coefficients, component values; per-step
loss and the mean validation accuracy every steps/5 steps, in its metadata) for the report's analyses; the median
seconds per step go to reports/timings/adapt@METHOD.json (uncached: both artifacts' hashes repeat across runs).
The validation accuracy is a logged diagnostic; no step is selected with it.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from mergeflow.errors import MergeflowError
from mergeflow.evaluation.timings import MEDIAN_SECONDS_PER_STEP, timing_rows, write_timings
from mergeflow.merging_io import save_merged_model
from mergeflow.params import Params
from mergeflow.statedict.io import save_tensors
from tasks._adapt_inputs import run_adaptation
from tasks._paths import adapt_record_path, merged_path, timing_path
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    method, settings = args.item, params.adapt
    if method not in settings.methods:
        raise MergeflowError(f"{method!r} is not in adapt.methods ({', '.join(settings.methods)})")
    device, autocast = stage_runtime(params)
    model, result, validation = run_adaptation(params, method, log_every=max(1, settings.steps // 5), device=device,
                                               autocast=autocast)
    info = {
        "settings": params.adapt.settings(method), "learn": settings.learn if method != "adamerging" else "lambda",
        "steps": settings.steps, "lr": settings.lr, "batch_size": settings.batch_size,
        "data_fraction": settings.data_fraction, "seed": settings.seed, "tasks": params.suite.tasks,
        "final_loss": result.losses[-1] if result.losses else None,
    }
    save_merged_model(merged_path(method), result.state, method, info)
    record = {"coefficients": result.coefficients}
    for key in model.svd_keys:
        record[f"mask/{key}"] = model.mask_matrix(key).to(torch.uint8).cpu()
        record[f"values/{key}"] = model.singular_values(key).float().cpu()
    metadata = {"method": method, "tasks": json.dumps(params.suite.tasks), "keys": json.dumps(model.keys),
                "losses": json.dumps(result.losses),
                "validation_accuracy": json.dumps({str(step): value for step, value in validation.items()})}
    save_tensors(adapt_record_path(method), record, metadata=metadata)
    median = statistics.median(result.seconds) if result.seconds else float("nan")
    write_timings(timing_path(f"adapt@{method}"), [timing_rows(params.suite.name, method, "none", MEDIAN_SECONDS_PER_STEP, median)])
    if result.losses:
        print(f"adapt@{method}: {settings.steps} steps, entropy {result.losses[0]:.4f} -> {result.losses[-1]:.4f}, "
              f"median {median * 1e3:.1f} ms/step; validation accuracy (logged, not used) "
              + ", ".join(f"step {step} {value:.4f}" for step, value in validation.items()))


if __name__ == "__main__":
    run_stage("adapt", "Test-time adaptation (AdaMerging / AdaRank) of one merged model; writes the final step.", build,
              item_help="method name from adapt.methods")
