"""Stage evaluate_routed@METHOD: task-unknown evaluation of one mask bank through every calibrated router.

Every task's test inputs are mixed into one stream. The MAD router is served as deployed, in batches of
``route.batch_size``: route each input on the weight-averaged model's features, group the batch by predicted task,
run each group once through that task's model rebuilt from the bit-packed bank, restore the order; its seconds per
input are measured. Every other router (and oracle routing, the reference of the analyses) is scored by one shared
pass: routes from the cached features@ embeddings, then each task's model once over every input any router sends to
it (the same predictions, without serving the stream once per router). A mis-routed input counts as wrong.
Writes per-task accuracy, routing accuracy and peak tensor memory (results part), every input's prediction
(artifacts/predictions) for the analyses, and the served router's seconds per input (reports/timings: uncached).
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from mergeflow.errors import MergeflowError
from mergeflow.evaluation.results import result_rows, write_part
from mergeflow.evaluation.timings import SECONDS_PER_INPUT, timing_rows, write_timings
from mergeflow.merging.bankfile import MaskBankFile
from mergeflow.merging.common import add_to_base
from mergeflow.models.head import apply_head
from mergeflow.params import Params
from mergeflow.routing.router_file import load_router
from mergeflow.routing.served import RoutedClassifier, SwappableEncoder, tensor_bytes
from mergeflow.routing.shared_pass import predictions_by_routing
from mergeflow.routing.stream import TestStream, per_task_scores, serve
from mergeflow.runtime.device import autocast_context, to_device
from tasks._merge_inputs import load_base_visual
from tasks._paths import merged_path, predictions_path, routed_part_path, router_path, timing_path
from tasks._prediction_table import prediction_rows, write_predictions
from tasks._routing_inputs import load_encoder, load_features, load_heads, load_single_model, test_stream
from tasks._runtime import stage_runtime
from tasks._stage import run_stage

TIMED_ROUTER = "mad"  # served end to end (timed); the others are scored by one shared pass (routing/shared_pass.py)


def _stream_features(params: Params, stream: TestStream) -> torch.Tensor:
    """The routing model's features of every stream input, read from features@ (the inputs it was computed on)."""
    test = load_features(params, params.route.feature_model)["test"]
    per_task = [test[task] for task in params.suite.tasks]
    return torch.stack([per_task[int(t)][int(p)] for t, p in zip(stream.tasks, stream.positions, strict=True)])


def build(args: argparse.Namespace, params: Params) -> None:
    method, route, tasks = args.item, params.route, params.suite.tasks
    if method not in route.methods:
        raise MergeflowError(f"{method!r} is not in route.methods ({', '.join(route.methods)})")
    bank = MaskBankFile(merged_path(method)).load_packed()
    if bank.tasks != tasks:
        raise MergeflowError(f"{merged_path(method)} holds tasks {bank.tasks}, suite.tasks is {tasks}: rerun merge@{method}")
    device, autocast = stage_runtime(params)
    base, heads = load_base_visual(), load_heads(tasks)
    module, preprocess = load_encoder(params)
    encoder, device_heads = SwappableEncoder(module.to(device)), [head.to(device) for head in heads]
    stream = test_stream(params)
    model_bytes = tensor_bytes(base)
    feature_weights = load_single_model(route.feature_model)
    held = tensor_bytes(base) + tensor_bytes(feature_weights) + bank.nbytes + tensor_bytes(heads)

    def task_weights(index: int) -> dict[str, torch.Tensor]:
        return add_to_base(base, bank.task_delta(index))

    routers = {}
    for name in route.routers:
        router, info = load_router(router_path(name))
        if info.get("feature_model") != route.feature_model or info.get("normalize") != route.normalize:
            raise MergeflowError(f"{router_path(name)} was calibrated on other features; rerun calibrate")
        routers[name] = router
    features = _stream_features(params, stream)
    assignments = {"oracle": stream.tasks, **{name: router.route(features) for name, router in routers.items()}}
    current: dict[int, dict[str, torch.Tensor]] = {}  # one task model held at a time, as in serving

    @torch.no_grad()
    def classify(task: int, rows: torch.Tensor) -> torch.Tensor:
        if task not in current:
            current.clear()
            current[task] = to_device(task_weights(task), device)
        with autocast_context(autocast, device):
            features = encoder(current[task], preprocess(stream.images[rows].to(device)))
            return apply_head(device_heads[task], features).argmax(dim=-1).cpu()

    predictions = predictions_by_routing(assignments, classify, len(tasks), route.batch_size)
    seconds: dict[str, float] = {}
    if TIMED_ROUTER in routers:
        server = RoutedClassifier(module, feature_weights, task_weights, heads, tasks,
                                  routers[TIMED_ROUTER], preprocess, normalize_features=route.normalize, device=device,
                                  autocast=autocast)
        served, seconds[TIMED_ROUTER] = serve(lambda images, _: server.predict(images), stream, route.batch_size,
                                              f"{method}+{TIMED_ROUTER} (group-batch serving, timed)")
        agree = float((served.classes == predictions[TIMED_ROUTER].classes).double().mean())
        print(f"{method}+{TIMED_ROUTER}: served end to end; {agree:.4%} of its predictions equal the shared pass's")
        predictions[TIMED_ROUTER] = served
    parts, rows = [], []
    for name, prediction in predictions.items():
        rows.append(prediction_rows(name, stream, prediction, tasks))
        scores = per_task_scores(stream, prediction, tasks)
        timing = f", {seconds[name] / len(stream) * 1e3:.3f} ms/input" if name in seconds else ""
        print(f"{method}+{name}: accuracy {sum(scores['accuracy'].values()) / len(tasks):.4f}, routing "
              f"{sum(scores['routing_accuracy'].values()) / len(tasks):.4f}{timing}")
        if name == "oracle":  # task-known numbers come from merge@; this pass only feeds the analyses
            continue
        # Tensor bytes at peak: everything held, plus one rebuilt task model and its delta while a group runs.
        peak = held + tensor_bytes(routers[name].state()) + 2 * model_bytes
        parts += [result_rows(params.suite.name, method, name, metric, values) for metric, values in scores.items()]
        parts.append(result_rows(params.suite.name, method, name, "peak_memory_bytes", {"all": float(peak)}))
    write_predictions(predictions_path(method), pd.concat(rows, ignore_index=True))
    write_part(routed_part_path(method), pd.concat(parts, ignore_index=True))
    write_timings(timing_path(f"evaluate_routed@{method}"),
                  [timing_rows(params.suite.name, method, name, SECONDS_PER_INPUT, value / len(stream)) for name, value in seconds.items()])


if __name__ == "__main__":
    run_stage("evaluate_routed", "Task-unknown evaluation of one mask-bank method through every router.", build,
              item_help="method name from route.methods")
