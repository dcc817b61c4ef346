"""Stage serve_dynamic@METHOD: fit one trained per-input method (WEMoE, MoW-Merging: src/mergeflow/dynamic/methods.py)
and serve the mixed test stream through it, task-unknown.

Writes artifacts/dynamic/METHOD.safetensors (what it learned, its settings in the metadata) and the results rows
(suite ``<suite.name>``, method/router as declared): accuracy per task under the input's dataset head, the tensor
bytes the server holds, and (MoW) the gate's routing accuracy; its seconds per input at ``dynamic.batch_size`` go to
reports/timings/serve_dynamic@METHOD.json (uncached).
"""

from __future__ import annotations

import argparse
import json

import pandas as pd
import torch

from mergeflow.dynamic.methods import FitInputs, get_dynamic_method
from mergeflow.errors import MergeflowError
from mergeflow.evaluation.results import result_rows, write_part
from mergeflow.evaluation.timings import SECONDS_PER_INPUT, timing_rows, write_timings
from mergeflow.lora.policies import head_logits
from mergeflow.params import Params
from mergeflow.routing.calibration import calibration_rows
from mergeflow.routing.served import Prediction, tensor_bytes
from mergeflow.routing.stream import per_task_scores
from mergeflow.routing.stream import serve as serve_stream
from mergeflow.seeding import seed_everything
from mergeflow.statedict.io import save_tensors
from tasks._adapt_inputs import unlabelled_pools
from tasks._artifacts import load_split_tensors
from tasks._merge_inputs import load_base_visual, load_task_vectors
from tasks._paths import dynamic_part_path, dynamic_path, timing_path
from tasks._routing_inputs import load_encoder, load_heads, load_single_model, test_stream
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    method, tasks = args.item, params.suite.tasks
    if method not in params.dynamic.methods:
        raise MergeflowError(f"{method!r} is not in dynamic.methods ({', '.join(params.dynamic.methods)})")
    spec = get_dynamic_method(method)
    hyperparameters = spec.resolve(params.dynamic.block(method))
    device, autocast = stage_runtime(params)
    module, preprocess = load_encoder(params)
    heads = load_heads(tasks)

    def drawn(split: str, samples: int, seed: int) -> list[torch.Tensor]:
        inputs = []
        for task in tasks:
            images = load_split_tensors(task, split)[1]
            rows = calibration_rows(len(images), task, min(samples, len(images)), seed) if samples else torch.arange(len(images))
            inputs.append(preprocess(images[rows]))
        return inputs

    seed_everything(0)
    fit_inputs = FitInputs(module, load_base_visual(), load_task_vectors(tasks), heads,
                           lambda seed: unlabelled_pools(params, preprocess, 1.0, seed), drawn, load_single_model,
                           params.dynamic.batch_size, device=device, autocast=autocast)
    fitted = spec.fit(fit_inputs, hyperparameters)
    stream = test_stream(params)
    chosen: list[torch.Tensor] = []

    def predict(images: torch.Tensor, true_tasks: torch.Tensor) -> Prediction:
        features, probabilities = fitted.serve(preprocess(images))
        if probabilities is not None:
            chosen.append(probabilities.argmax(dim=-1))
        return Prediction(true_tasks, head_logits(features, heads, true_tasks))  # the dataset's head (module docstring)

    with torch.no_grad():
        prediction, seconds = serve_stream(predict, stream, params.dynamic.batch_size, f"serve_dynamic {method}")
    scores = per_task_scores(stream, prediction, tasks)
    memory = fitted.nbytes + tensor_bytes(heads)
    suite = params.suite.name
    rows = [
        result_rows(suite, spec.method, spec.router, "accuracy", scores["accuracy"]),
        result_rows(suite, spec.method, spec.router, "peak_memory_bytes", {"all": float(memory)}),
    ]
    routing = ""
    if chosen:
        routed = torch.cat(chosen) == stream.tasks
        per_task = {task: float(routed[stream.tasks == index].float().mean()) for index, task in enumerate(tasks)}
        rows.append(result_rows(suite, spec.method, spec.router, "routing_accuracy", per_task))
        routing = f", routing {sum(per_task.values()) / len(tasks):.4f}"
    record = {key: value for key, value in fitted.record.items() if "seconds" not in key}  # timings stay out of the artifact
    save_tensors(dynamic_path(method), fitted.learned, metadata={"method": method, "tasks": json.dumps(tasks), "record": json.dumps(record)})
    write_part(dynamic_part_path(method), pd.concat(rows, ignore_index=True))
    write_timings(timing_path(f"serve_dynamic@{method}"),
                  [timing_rows(suite, spec.method, spec.router, SECONDS_PER_INPUT, seconds / len(stream))])
    average = sum(scores["accuracy"].values()) / len(tasks)
    print(f"{suite} {spec.method}/{spec.router}: accuracy {average:.4f}{routing}, {seconds / len(stream) * 1e3:.3f} ms/input, "
          f"{memory / 2**20:.1f} MiB; {json.dumps(fitted.record)}")


if __name__ == "__main__":
    run_stage("serve_dynamic", "Fit one trained per-input method (WEMoE, MoW-Merging) and serve the mixed test stream through it.",
              build, item_help="method name from dynamic.methods")
