"""Stage features@MODEL: a merged single model's image embeddings for every train/val/test input of every task.

Cached once, they serve every router's calibration (any N, eps, seed), the reject thresholds and the analyses,
so changing a routing hyperparameter never re-runs a model.
"""

from __future__ import annotations

import argparse
import json

import torch

from mergeflow.errors import MergeflowError
from mergeflow.params import Params
from mergeflow.routing.features import extract_features
from mergeflow.routing.served import SwappableEncoder, tensor_bytes
from mergeflow.runtime.device import to_device
from mergeflow.statedict.io import save_tensors
from tasks._artifacts import load_split_tensors
from tasks._paths import features_path
from tasks._routing_inputs import SPLITS, load_encoder, load_single_model
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    model = args.item
    if model not in params.route.feature_models:
        raise MergeflowError(f"{model!r} is not in route.feature_models ({', '.join(params.route.feature_models)})")
    device, autocast = stage_runtime(params)
    module, preprocess = load_encoder(params)
    encoder, weights = SwappableEncoder(module.to(device)), to_device(load_single_model(model), device)

    def encode(images: torch.Tensor) -> torch.Tensor:
        return encoder(weights, preprocess(images))

    tensors = {}
    for task in params.suite.tasks:
        for split in SPLITS:
            images = load_split_tensors(task, split)[1]
            tensors[f"{task}/{split}"] = extract_features(encode, images, params.evaluate.batch_size, f"{model} {task}/{split}",
                                                         device, autocast)
    save_tensors(features_path(model), tensors, metadata={"model": model, "tasks": json.dumps(params.suite.tasks)})
    print(f"features@{model}: {len(tensors)} splits, {tensor_bytes(tensors) / 1e6:.1f} MB")


if __name__ == "__main__":
    run_stage("features", "Image embeddings of one merged model for every input (routing calibration and analyses).", build,
              item_help="model name from route.feature_models")
