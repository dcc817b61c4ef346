"""Group-batch inference (MAD Algorithm 1): run each routed group once with its task's model, restore the order.

Building a task's model (masking the merged delta, swapping the head) costs far more than a forward pass, so each
task is built once per batch instead of once per input. The function knows nothing about models.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mergeflow.errors import MergeflowError


def grouped_apply(
    inputs: torch.Tensor, assignment: torch.Tensor, run_group: Callable[[int, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """output[i] = the row for inputs[i] of ``run_group(assignment[i], inputs[rows of that group])``.

    ``run_group`` is called once per distinct index, in ascending order, with the group's rows in input order, and
    must return one output row per input row; all groups must agree on trailing shape and dtype.
    """
    if assignment.dim() != 1 or assignment.shape[0] != inputs.shape[0] or assignment.is_floating_point():
        raise MergeflowError(
            f"assignment must be an integer (B,) tensor with B = {inputs.shape[0]} inputs, got "
            f"{assignment.dtype} {tuple(assignment.shape)}"
        )
    if inputs.shape[0] == 0:
        raise MergeflowError("grouped_apply got an empty batch: skip empty batches before routing")
    assignment = assignment.to(device=inputs.device, dtype=torch.int64)
    order = torch.argsort(assignment, stable=True)
    groups, counts = torch.unique_consecutive(assignment[order], return_counts=True)
    output: torch.Tensor | None = None
    for group, rows in zip(groups.tolist(), torch.split(order, counts.tolist()), strict=True):
        result = run_group(group, inputs[rows])
        if not isinstance(result, torch.Tensor) or result.dim() == 0 or result.shape[0] != rows.shape[0]:
            got = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
            raise MergeflowError(f"run_group({group}) must return {rows.shape[0]} rows (one per input), got {got}")
        if output is None:
            output = result.new_empty((inputs.shape[0], *result.shape[1:]))
        elif result.shape[1:] != output.shape[1:] or result.dtype != output.dtype:
            raise MergeflowError(
                f"run_group({group}) returned {result.dtype} rows of shape {tuple(result.shape[1:])} but earlier "
                f"groups returned {output.dtype} {tuple(output.shape[1:])}: every group must return the same"
            )
        output[rows.to(output.device)] = result
    assert output is not None
    return output
