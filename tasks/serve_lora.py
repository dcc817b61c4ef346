"""Stage serve_lora@METHOD: one LoRA-expert method end to end — fit what it needs to serve (calibrate_lora.py: TR's
temperature and top-K, Twin's router, MAD's Gaussians, on training and validation inputs only), then serve the mixed
test stream through it (evaluate_lora.py). One stage instead of two: both halves read the same experts and share
every parameter, and a stage's start-up costs seconds. Either half still runs alone as ``python -m tasks.<half>``.
"""

from __future__ import annotations

import argparse

from mergeflow.declarations.lora import LORA_DECLARATIONS
from mergeflow.params import Params
from tasks import calibrate_lora, evaluate_lora
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    calibrate_lora.build(args, params)
    evaluate_lora.build(args, params)


def methods_help() -> str:
    """The LoRA methods and their hyperparameters (params.yaml's lora.<method> blocks), from their declarations."""
    lines = ["methods (lora.<method> in params.yaml lists only what differs from these defaults):"]
    for declaration in LORA_DECLARATIONS.values():
        lines += [f"{declaration.name}: {declaration.summary}", *(declaration.describe() or ["  (no hyperparameters)"])]
    return "\n".join(lines)


if __name__ == "__main__":
    run_stage("serve_lora", "Calibrate one LoRA-expert method on train/val, then serve the test stream through it.",
              build, item_help="method name from lora.methods", epilog=methods_help())
