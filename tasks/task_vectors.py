"""Stage task_vectors@TASK: tau = theta_expert - theta_pretrained over the encoder's floating-point entries."""

from __future__ import annotations

import argparse

from mergeflow.params import Params
from mergeflow.statedict.io import load_tensors, save_tensors
from mergeflow.statedict.task_vectors import task_vector
from tasks._merge_inputs import load_base_visual
from tasks._paths import expert_path, task_vector_path
from tasks._stage import require_task, run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    require_task(params, args.item)
    base = load_base_visual()
    tau = task_vector(load_tensors(expert_path(args.item)), base, expert_name=str(expert_path(args.item)))
    norm = sum(float(v.float().pow(2).sum()) for v in tau.values()) ** 0.5
    print(f"task vector {args.item}: {len(tau)} entries, {sum(v.numel() for v in tau.values())} parameters, L2 norm {norm:.4f}")
    save_tensors(task_vector_path(args.item), tau, metadata={"task": args.item})


if __name__ == "__main__":
    run_stage("task_vectors", "Compute one task vector from its expert and the base model.", build,
              item_help="task name from suite.tasks")
