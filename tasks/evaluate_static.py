"""Stage evaluate_static: the task-unknown baseline of every single merged or adapted model of ``route.static``
(router=none), in one stage: each evaluation costs a few seconds, a stage's start-up as much.

The same mixed test stream and batch size as evaluate_routed; each input is scored with its own task's head (the
static rows' convention). Writes accuracy and tensor memory (results part), every input's prediction, and the
seconds per input (reports/timings/evaluate_static.json: uncached, so the part's hash repeats across runs).
"""

from __future__ import annotations

import argparse

import pandas as pd

from mergeflow.evaluation.results import result_rows, write_part
from mergeflow.evaluation.timings import SECONDS_PER_INPUT, timing_rows, write_timings
from mergeflow.params import Params
from mergeflow.routing.served import StaticClassifier, tensor_bytes
from mergeflow.routing.stream import per_task_scores, serve
from tasks._paths import static_part_path, static_predictions_path, timing_path
from tasks._prediction_table import prediction_rows, write_predictions
from tasks._routing_inputs import load_encoder, load_heads, load_single_model, test_stream
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    route, tasks = params.route, params.suite.tasks
    device, autocast = stage_runtime(params)
    heads = load_heads(tasks)
    module, preprocess = load_encoder(params)
    stream = test_stream(params)
    suite = params.suite.name
    timings = []
    for method in route.static:
        weights = load_single_model(method)
        server = StaticClassifier(module, weights, heads, preprocess, device=device, autocast=autocast)
        prediction, seconds = serve(server.predict, stream, route.batch_size, method)
        accuracy = per_task_scores(stream, prediction, tasks)["accuracy"]
        print(f"{method} (static): accuracy {sum(accuracy.values()) / len(tasks):.4f}, "
              f"{seconds / len(stream) * 1e3:.3f} ms/input")
        rows = [
            result_rows(suite, method, "none", "accuracy", accuracy),
            result_rows(suite, method, "none", "peak_memory_bytes",
                        {"all": float(tensor_bytes(weights) + tensor_bytes(heads))}),
        ]
        write_predictions(static_predictions_path(method), prediction_rows("none", stream, prediction, tasks))
        write_part(static_part_path(method), pd.concat(rows, ignore_index=True))
        timings.append(timing_rows(suite, method, "none", SECONDS_PER_INPUT, seconds / len(stream)))
    write_timings(timing_path("evaluate_static"), timings)


if __name__ == "__main__":
    run_stage("evaluate_static", "Task-unknown baseline: each model of route.static for every input (router=none).",
              build)
