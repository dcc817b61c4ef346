"""Calibration draws, router files, and the analyses (seen/unseen with the reject option) on synthetic features."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.routing.analysis import eps_sweep, sample_size_sweep, seen_unseen
from mergeflow.routing.calibration import calibrate, draw_calibration
from mergeflow.routing.router_file import load_router, save_router
from mergeflow.statedict.io import save_tensors

TASKS = ("a", "b", "c")


def _features(generator: torch.Generator, count: int, dim: int = 6) -> dict[str, torch.Tensor]:
    """Three well-separated Gaussian clusters."""
    return {task: torch.randn(count, dim, generator=generator) + 8 * index for index, task in enumerate(TASKS)}


def test_draws_are_seeded_per_task_and_refuse_too_many_samples() -> None:
    rows = [torch.arange(20.0).view(10, 2), torch.arange(40.0).view(20, 2)]
    first, again = draw_calibration(rows, ["a", "b"], 4, seed=0), draw_calibration(rows, ["a", "b"], 4, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not torch.equal(first[1], draw_calibration(rows, ["a", "b"], 4, seed=1)[1])
    # a task's draw does not depend on the other tasks
    assert torch.equal(draw_calibration(rows[1:], ["b"], 4, seed=0)[0], first[1])
    assert draw_calibration(rows, ["a", "b"], None, seed=0)[0] is rows[0]
    with pytest.raises(MergeflowError, match="11 calibration samples .* only 10"):
        draw_calibration(rows, ["a", "b"], 11, seed=0)


def test_router_file_round_trip_and_a_foreign_file_is_refused(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    train, val = _features(generator, 30), _features(generator, 10)
    fitted = calibrate("mad", TASKS, list(train.values()), list(val.values()), samples=16, eps=1e-3, seed=0, quantile=0.9)
    save_router(tmp_path / "mad.safetensors", fitted.router, {"reject_threshold": fitted.reject_threshold})
    router, info = load_router(tmp_path / "mad.safetensors")
    queries = torch.cat(list(val.values()))
    assert torch.equal(router.scores(queries), fitted.router.scores(queries))
    assert info["reject_threshold"] == fitted.reject_threshold and router.tasks == TASKS
    save_tensors(tmp_path / "other.safetensors", {"x": torch.zeros(2)})
    with pytest.raises(MergeflowError, match="not a mergeflow router file"):
        load_router(tmp_path / "other.safetensors")


def test_reject_threshold_passes_about_the_quantile_of_held_in_inputs() -> None:
    generator = torch.Generator().manual_seed(1)
    train, val = _features(generator, 200), _features(generator, 200)
    fitted = calibrate("mad", TASKS, list(train.values()), list(val.values()), samples=100, eps=1e-3, seed=0, quantile=0.9)
    accepted = (fitted.router.min_distance(torch.cat(list(val.values()))) <= fitted.reject_threshold).double().mean()
    assert abs(float(accepted) - 0.9) < 0.01


def test_seen_unseen_routes_unseen_tasks_wrong_and_the_reject_option_hands_them_to_the_fallback() -> None:
    generator = torch.Generator().manual_seed(2)
    features = {split: _features(generator, count) for split, count in (("train", 64), ("val", 50), ("test", 40))}
    served = {task: torch.ones(40, dtype=torch.bool) for task in TASKS}  # the own-task model is always right
    fallback = {task: torch.arange(40) % 2 == 0 for task in TASKS}  # the fallback model is right half the time
    records, threshold = seen_unseen(TASKS, ["a", "b"], features, served, fallback, samples=32, eps=1e-3, seed=0, quantile=0.95)
    by_task = {record["task"]: record for record in records}
    assert threshold > 0
    assert by_task["a"]["routing_accuracy"] == 1.0 and by_task["a"]["accuracy"] == 1.0
    assert by_task["c"]["seen"] is False and by_task["c"]["accuracy"] == 0.0  # unseen: always mis-routed
    assert by_task["c"]["reject_rate"] == 1.0  # 8 standard deviations away from every seen task
    assert by_task["c"]["accuracy_with_reject"] == 0.5  # ... so the fallback serves all of it
    assert by_task["a"]["reject_rate"] < 0.2
    with pytest.raises(MergeflowError, match="subset"):
        seen_unseen(TASKS, ["z"], features, served, fallback, samples=32, eps=1e-3, seed=0, quantile=0.95)


def test_sweeps_cover_every_setting_and_separable_tasks_route_perfectly() -> None:
    generator = torch.Generator().manual_seed(3)
    train, test = _features(generator, 40), _features(generator, 20)
    samples = sample_size_sweep(TASKS, train, test, [4, 8], [0, 1], eps=1e-3)
    assert {(r["value"], r["seed"]) for r in samples} == {(4, 0), (4, 1), (8, 0), (8, 1), ("all", 0)}
    assert len(samples) == 5 * len(TASKS)
    eps = eps_sweep(TASKS, train, test, [1e-2, 1e-4], [0], samples=8)
    assert {r["value"] for r in eps} == {1e-2, 1e-4}
    assert all(r["routing_accuracy"] == 1.0 for r in samples + eps)
