"""The serving half of stage serve_lora@METHOD: serve the mixed test stream through one LoRA-expert method (its
policy built by the method's ``build_policy``, src/mergeflow/lora/methods.py, from calibrate_lora's file) and write
its rows (suite ``<suite.name>-lora``): accuracy and routing accuracy per task and the bytes the server holds; its
seconds per input at ``lora.batch_size`` go to reports/timings/serve_lora@METHOD.json (uncached).
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from mergeflow.errors import MergeflowError
from mergeflow.evaluation.results import result_rows, write_part
from mergeflow.evaluation.timings import SECONDS_PER_INPUT, timing_rows, write_timings
from mergeflow.lora.methods import ServingInputs, get_lora_method
from mergeflow.lora.policies import serve
from mergeflow.params import Params
from mergeflow.routing.served import Prediction, tensor_bytes
from mergeflow.routing.stream import per_task_scores
from mergeflow.routing.stream import serve as serve_stream
from tasks._lora_inputs import load_lora_bank, load_policy, load_tr_router
from tasks._paths import lora_part_path, timing_path
from tasks._routing_inputs import load_encoder, load_heads, test_stream
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    method, tasks = args.item, params.suite.tasks
    if method not in params.lora.methods:
        raise MergeflowError(f"{method!r} is not in lora.methods ({', '.join(params.lora.methods)})")
    spec = get_lora_method(method)
    device, autocast = stage_runtime(params)
    bank, heads = load_lora_bank(params), load_heads(tasks)
    module, preprocess = load_encoder(params)
    tensors, settings = load_policy(method)
    stream = test_stream(params)
    inputs = ServingInputs(tasks, bank, module, preprocess, heads, lambda: load_tr_router(params), stream, params.lora.batch_size,
                           device=device, autocast=autocast)
    policy, router_bytes = spec.build_policy(tensors, settings, inputs)
    chosen: list[torch.Tensor] = []

    def predict(images: torch.Tensor, true_tasks: torch.Tensor) -> Prediction:
        classes, coefficients = serve(policy, heads, preprocess(images), true_tasks)
        chosen.append(coefficients.argmax(dim=-1))
        return Prediction(true_tasks, classes)  # scored with the dataset's head (see lora/policies.py)

    with torch.no_grad():
        prediction, seconds = serve_stream(predict, stream, params.lora.batch_size, f"evaluate_lora {method}")
    scores = per_task_scores(stream, prediction, tasks)
    routed = torch.cat(chosen) == stream.tasks
    routing = {task: float(routed[stream.tasks == index].float().mean()) for index, task in enumerate(tasks)}
    name, router = spec.method, spec.router
    suite = f"{params.suite.name}-lora"
    memory = policy.encoder.nbytes() + tensor_bytes(heads) + router_bytes
    rows = [
        result_rows(suite, name, router, "accuracy", scores["accuracy"]),
        result_rows(suite, name, router, "peak_memory_bytes", {"all": float(memory)}),
    ]
    if spec.routes:
        rows.append(result_rows(suite, name, router, "routing_accuracy", routing))
    average = sum(scores["accuracy"].values()) / len(tasks)
    print(f"{suite} {name}/{router}: accuracy {average:.4f}, routing {sum(routing.values()) / len(tasks):.4f}, "
          f"{seconds / len(stream) * 1e3:.3f} ms/input, {memory / 2**20:.1f} MiB")
    write_part(lora_part_path(method), pd.concat(rows, ignore_index=True))
    write_timings(timing_path(f"serve_lora@{method}"), [timing_rows(suite, name, router, SECONDS_PER_INPUT, seconds / len(stream))])


if __name__ == "__main__":
    run_stage("evaluate_lora", "Serve the test stream through one LoRA-expert method (task-known, static or per-input routed).",
              build, item_help="method name from lora.methods")
