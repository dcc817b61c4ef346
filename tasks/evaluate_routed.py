"""Stage evaluate_routed@METHOD: task-unknown evaluation of one mask bank through every calibrated router.

Every task's test inputs are mixed into one stream and served in batches of ``route.batch_size``: route each
input on the weight-averaged model's features, group the batch by predicted task, run each group once through
that task's model rebuilt from the bit-packed bank, restore the order. A mis-routed input counts as wrong.
Writes per-task accuracy and routing accuracy, seconds per input and the peak tensor memory (results part), and
every input's prediction (artifacts/predictions) for the analyses; oracle routing is served too, through the
same code, as the reference the analyses compare against.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from mergeflow.errors import MergeflowError
from mergeflow.evaluation.results import result_rows, write_part
from mergeflow.merging.bankfile import MaskBankFile
from mergeflow.merging.common import add_to_base
from mergeflow.params import Params
from mergeflow.routing.router_file import load_router
from mergeflow.routing.served import RoutedClassifier, tensor_bytes
from mergeflow.routing.stream import per_task_scores, serve
from tasks._merge_inputs import load_base_visual
from tasks._paths import merged_path, predictions_path, routed_part_path, router_path
from tasks._prediction_table import prediction_rows, write_predictions
from tasks._routing_inputs import load_encoder, load_heads, load_single_model, test_stream
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    method, route, tasks = args.item, params.route, params.suite.tasks
    if method not in route.methods:
        raise MergeflowError(f"{method!r} is not in route.methods ({', '.join(route.methods)})")
    bank = MaskBankFile(merged_path(method)).load_packed()
    if bank.tasks != tasks:
        raise MergeflowError(f"{merged_path(method)} holds tasks {bank.tasks}, suite.tasks is {tasks}: rerun merge@{method}")
    base, heads = load_base_visual(), load_heads(tasks)
    feature_weights = load_single_model(route.feature_model)
    module, preprocess = load_encoder(params)
    stream = test_stream(params)
    model_bytes = tensor_bytes(base)
    held = tensor_bytes(base) + tensor_bytes(feature_weights) + bank.nbytes + tensor_bytes(heads)

    def task_weights(index: int) -> dict[str, torch.Tensor]:
        return add_to_base(base, bank.task_delta(index))

    parts, predictions = [], []
    for name in ["oracle", *route.routers]:
        router = None
        if name != "oracle":
            router, info = load_router(router_path(name))
            if info.get("feature_model") != route.feature_model or info.get("normalize") != route.normalize:
                raise MergeflowError(f"{router_path(name)} was calibrated on other features; rerun calibrate@{name}")
        server = RoutedClassifier(module, feature_weights, task_weights, heads, tasks, router, preprocess,
                                  normalize_features=route.normalize)
        oracle = name == "oracle"
        prediction, seconds = serve(
            lambda images, true_tasks: server.predict(images, true_tasks if oracle else None),
            stream, route.batch_size, f"{method}+{name}",
        )
        predictions.append(prediction_rows(name, stream, prediction, tasks))
        scores = per_task_scores(stream, prediction, tasks)
        print(f"{method}+{name}: accuracy {sum(scores['accuracy'].values()) / len(tasks):.4f}, routing "
              f"{sum(scores['routing_accuracy'].values()) / len(tasks):.4f}, {seconds / len(stream) * 1e3:.3f} ms/input")
        if oracle:  # task-known numbers come from evaluate_merged; this pass only feeds the analyses
            continue
        # Tensor bytes at peak: everything held, plus one rebuilt task model and its delta while a group runs.
        peak = held + tensor_bytes(router.state()) + 2 * model_bytes  # type: ignore[union-attr]
        parts += [result_rows(params.suite.name, method, name, metric, values) for metric, values in scores.items()]
        parts.append(result_rows(params.suite.name, method, name, "seconds_per_input", {"all": seconds / len(stream)}))
        parts.append(result_rows(params.suite.name, method, name, "peak_memory_bytes", {"all": float(peak)}))
    write_predictions(predictions_path(method), pd.concat(predictions, ignore_index=True))
    write_part(routed_part_path(method), pd.concat(parts, ignore_index=True))


if __name__ == "__main__":
    run_stage("evaluate_routed", "Task-unknown evaluation of one mask-bank method through every router.", build,
              item_help="method name from route.methods")
