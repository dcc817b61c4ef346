"""One shared pass scores many routings: each (input, task) pair is classified once, and every routing gets exactly
the classes that serving it alone would give."""

from __future__ import annotations

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.routing.shared_pass import predictions_by_routing


def _classifier(calls: list[tuple[int, int]], sizes: list[int] | None = None):  # type: ignore[no-untyped-def]
    """A task 'model' whose class depends on both the input and the task, recording every pair it is asked for."""

    def classify(task: int, rows: torch.Tensor) -> torch.Tensor:
        calls.extend((int(row), task) for row in rows)
        if sizes is not None:
            sizes.append(len(rows))
        return (rows * 7 + task * 3) % 5

    return classify


def test_each_pair_is_classified_once_and_matches_serving_each_routing_alone() -> None:
    generator = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 4, (50,), generator=generator)
    noisy = torch.where(torch.rand(50, generator=generator) < 0.3, torch.randint(0, 4, (50,), generator=generator), truth)
    assignments = {"oracle": truth, "noisy": noisy, "all_zero": torch.zeros(50, dtype=torch.int64)}
    calls: list[tuple[int, int]] = []
    sizes: list[int] = []
    predictions = predictions_by_routing(assignments, _classifier(calls, sizes), tasks=4, batch_size=8)
    assert max(sizes) == 8  # batched, never more than batch_size rows per call
    assert len(calls) == len(set(calls))  # no pair twice
    wanted = {(i, int(a[i])) for a in assignments.values() for i in range(50)}
    assert set(calls) == wanted  # and only the pairs some routing asks for
    for name, assignment in assignments.items():
        alone: list[tuple[int, int]] = []
        expected = torch.stack([_classifier(alone)(int(t), torch.tensor([i]))[0] for i, t in enumerate(assignment)])
        assert torch.equal(predictions[name].tasks, assignment) and torch.equal(predictions[name].classes, expected), name


def test_bad_assignments_are_refused_with_one_message() -> None:
    classify = _classifier([])
    with pytest.raises(MergeflowError, match="task indices in"):
        predictions_by_routing({"a": torch.tensor([0, 4])}, classify, tasks=4, batch_size=2)
    with pytest.raises(MergeflowError, match="same N inputs"):
        predictions_by_routing({"a": torch.tensor([0, 1]), "b": torch.tensor([0])}, classify, tasks=4, batch_size=2)
    with pytest.raises(MergeflowError, match="no routing"):
        predictions_by_routing({}, classify, tasks=4, batch_size=2)
