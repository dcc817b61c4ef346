"""The calibration half of stage serve_lora@METHOD: everything its serving half (evaluate_lora.py) needs to serve
METHOD over the LoRA experts, fitted by the method's ``calibrate`` (src/mergeflow/lora/methods.py) on training and
validation inputs drawn here. A method that fits nothing writes its settings only, without loading the experts or
the encoder. Test data is never read here.
"""

from __future__ import annotations

import argparse

import torch

from mergeflow.errors import MergeflowError
from mergeflow.lora.methods import CalibrationInputs, get_lora_method
from mergeflow.params import Params
from mergeflow.routing.calibration import calibration_rows
from tasks._artifacts import load_split_tensors
from tasks._lora_inputs import load_lora_bank, load_tr_router, save_policy
from tasks._routing_inputs import load_encoder, load_heads
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def _drawn(tasks: list[str], split: str, samples: int | None, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, labels) of ``samples`` seeded inputs per task of ``split`` (all of them when the split is smaller),
    or with ``samples`` None every input of the split in stored order."""
    drawn = []
    for task in tasks:
        _, images, labels = load_split_tensors(task, split)
        if samples is None:
            drawn.append((images, labels))
            continue
        rows = calibration_rows(len(images), task, min(samples, len(images)), seed)
        drawn.append((images[rows], labels[rows]))
    return drawn


def build(args: argparse.Namespace, params: Params) -> None:
    method, tasks = args.item, params.suite.tasks
    if method not in params.lora.methods:
        raise MergeflowError(f"{method!r} is not in lora.methods ({', '.join(params.lora.methods)})")
    spec, settings = get_lora_method(method), params.lora.settings(method)  # every declared hyperparameter
    if not spec.fits:  # the same file as before, without building 8 adapted CLIPs (and importing open_clip)
        save_policy(method, *spec.calibrate(settings, None))
        return
    device, autocast = stage_runtime(params)
    bank = load_lora_bank(params)
    module, preprocess = load_encoder(params)
    inputs = CalibrationInputs(tasks, bank, module, preprocess, lambda split, samples, seed: _drawn(tasks, split, samples, seed),
                               lambda: load_heads(tasks), lambda: load_tr_router(params), params.lora.batch_size,
                               device=device, autocast=autocast)
    torch.manual_seed(0)
    with torch.enable_grad() if spec.needs_grad else torch.no_grad():
        tensors, record = spec.calibrate(settings, inputs)
    save_policy(method, tensors, record)


if __name__ == "__main__":
    run_stage("calibrate_lora", "Fit what one LoRA-expert method needs to serve (router, temperature and top-K on validation).",
              build, item_help="method name from lora.methods")
