"""Group-batch inference: one call per group in ascending order, outputs back in input order."""

from __future__ import annotations

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.routing.grouped import grouped_apply


def test_restores_order_and_calls_each_group_once() -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(37, 3, 2, generator=generator)
    assignment = torch.randint(0, 5, (37,), generator=generator)
    assignment[0] = 7  # a sparse index that is still its own group
    calls: list[tuple[int, int]] = []

    def run_group(index: int, rows: torch.Tensor) -> torch.Tensor:
        calls.append((index, rows.shape[0]))
        return (rows * index + index).sum(dim=-1)  # a different trailing shape than the inputs

    output = grouped_apply(inputs, assignment, run_group)
    expected = (inputs * assignment[:, None, None] + assignment[:, None, None]).sum(dim=-1)
    assert torch.equal(output, expected)
    groups, counts = torch.unique(assignment, return_counts=True)
    assert calls == list(zip(groups.tolist(), counts.tolist(), strict=True))


def test_rows_within_a_group_keep_input_order() -> None:
    seen: list[torch.Tensor] = []
    grouped_apply(torch.arange(6.0), torch.tensor([1, 0, 1, 0, 1, 0]), lambda i, x: seen.append(x) or x)
    assert [s.tolist() for s in seen] == [[1.0, 3.0, 5.0], [0.0, 2.0, 4.0]]


def test_inconsistent_groups_are_refused() -> None:
    with pytest.raises(MergeflowError, match="same"):
        grouped_apply(torch.ones(4, 2), torch.tensor([0, 1, 0, 1]), lambda i, x: x if i == 0 else x.double())
    with pytest.raises(MergeflowError, match="one per input"):
        grouped_apply(torch.ones(4, 2), torch.tensor([0, 1, 0, 1]), lambda i, x: x[:1])
    with pytest.raises(MergeflowError, match="integer"):
        grouped_apply(torch.ones(4, 2), torch.zeros(4), lambda i, x: x)
