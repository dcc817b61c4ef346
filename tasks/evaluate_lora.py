"""The serving half of stage serve_lora@METHOD: serve the mixed test stream through one LoRA-expert method and write
its rows (suite ``<suite.name>-lora``): accuracy and routing accuracy per task, seconds per input at ``lora.batch_size`` and
the bytes the server holds.
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd
import torch

from mergeflow.errors import MergeflowError
from mergeflow.evaluation.results import result_rows, write_part
from mergeflow.lora.bank import FactorBank
from mergeflow.lora.mixed_encoder import MixedEncoder
from mergeflow.lora.policies import (
    ConstantPolicy,
    DawinPolicy,
    ExpertPolicy,
    MadPolicy,
    Policy,
    TrPolicy,
    TwinPolicy,
    dataset_mean_policy,
    serve,
)
from mergeflow.lora.twin import load_twin_router, twin_encoder
from mergeflow.params import Params
from mergeflow.routing.routers import Router
from mergeflow.routing.served import Prediction, tensor_bytes
from mergeflow.routing.stream import per_task_scores
from mergeflow.routing.stream import serve as serve_stream
from tasks._lora_inputs import load_lora_bank, load_policy, load_tr_router
from tasks._paths import lora_part_path
from tasks._routing_inputs import load_encoder, load_heads, test_stream
from tasks._stage import run_stage

# method -> (results-table method name, router name)
ROWS = {
    "experts": ("finetuned", "oracle"),
    "task_arithmetic": ("task_arithmetic", "none"),
    "tr": ("tr_merging", "tr"),
    "twin": ("twin_merging", "twin"),
    "dawin": ("dawin", "dawin"),
    "mad": ("finetuned", "mad"),
}


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key.removeprefix(prefix): value for key, value in tensors.items() if key.startswith(prefix)}


def build_policy(method: str, tensors: dict[str, torch.Tensor], settings: dict[str, Any], params: Params, bank: FactorBank,
                 module: torch.nn.Module, heads: list[torch.Tensor]) -> tuple[Policy, int]:
    """The method's policy from its calibration file, and the bytes its router holds beyond the encoder."""
    tasks = params.suite.tasks
    if method == "twin":
        router = _prefixed(tensors, "router/")
        encoder = twin_encoder(module, bank, settings["shared_scale"], settings["density"])
        return TwinPolicy(encoder, load_twin_router(router)), tensor_bytes(router)
    encoder = MixedEncoder(module, bank)
    if method == "experts":
        return ExpertPolicy(encoder), 0
    if method == "task_arithmetic":
        return ConstantPolicy(encoder, settings["scale"]), 0
    if method == "dawin":
        return DawinPolicy(encoder, heads, settings["scale"], settings["head"]), 0
    if method == "tr":
        samples = [tensors[f"samples/{task}"] for task in tasks]
        router_model = load_tr_router(params)
        held = tensor_bytes(samples) + (router_model.parameter_bytes() if router_model is not None else 0)
        return TrPolicy(encoder, samples, settings["temperature"], settings["top_k"], settings["form"], settings["renormalize"],
                        router_model), held
    if method == "mad":
        router = _prefixed(tensors, "router/")
        return MadPolicy(encoder, Router.from_state("mad", tasks, router)), tensor_bytes(router)
    raise MergeflowError(f"no policy for LoRA method {method!r}")


def build(args: argparse.Namespace, params: Params) -> None:
    method, tasks = args.item, params.suite.tasks
    if method not in params.lora.methods:
        raise MergeflowError(f"{method!r} is not in lora.methods ({', '.join(params.lora.methods)})")
    bank, heads = load_lora_bank(params), load_heads(tasks)
    module, preprocess = load_encoder(params)
    tensors, settings = load_policy(method)
    policy, router_bytes = build_policy(method, tensors, settings, params, bank, module, heads)
    stream = test_stream(params)
    if method == "dawin" and settings["mode"] == "dataset_mean":
        # the authors' multi-task mode: mean coefficients over each dataset's test inputs, one merge per dataset
        policy = dataset_mean_policy(policy, preprocess(stream.images), stream.tasks, params.lora.batch_size)
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
    name, router = ROWS[method]
    suite = f"{params.suite.name}-lora"
    memory = policy.encoder.nbytes() + tensor_bytes(heads) + router_bytes
    rows = [
        result_rows(suite, name, router, "accuracy", scores["accuracy"]),
        result_rows(suite, name, router, "seconds_per_input", {"all": seconds / len(stream)}),
        result_rows(suite, name, router, "peak_memory_bytes", {"all": float(memory)}),
    ]
    if router not in ("oracle", "none"):
        rows.append(result_rows(suite, name, router, "routing_accuracy", routing))
    average = sum(scores["accuracy"].values()) / len(tasks)
    print(f"{suite} {name}/{router}: accuracy {average:.4f}, routing {sum(routing.values()) / len(tasks):.4f}, "
          f"{seconds / len(stream) * 1e3:.3f} ms/input, {memory / 2**20:.1f} MiB")
    write_part(lora_part_path(method), pd.concat(rows, ignore_index=True))


if __name__ == "__main__":
    run_stage("evaluate_lora", "Serve the test stream through one LoRA-expert method (task-known, static or per-input routed).",
              build, item_help="method name from lora.methods")
