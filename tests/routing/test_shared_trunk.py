"""Shared-trunk routed serving on a real (tiny, random) open_clip tower: the split forward must be the task model's
forward wherever the task shares the trunk's weights, L = all must be the routing model with the task's head, routing
on block-L features must separate separable tasks, and a split outside [0, blocks] must fail clearly."""

from __future__ import annotations

from collections.abc import Collection

import pytest
import torch
from tiny_tower import TASKS, task_images, tiny_clip
from torch.func import functional_call

from mergeflow.errors import MergeflowError
from mergeflow.merging.bankfile import PackedMaskBank
from mergeflow.models.vit_split import SplitTower, block_count, keys_after
from mergeflow.routing.served import logits
from mergeflow.routing.shared_trunk import SharedTrunkClassifier
from mergeflow.routing.trunk_calibration import calibrate_every_split, features_by_split
from mergeflow.statedict.bitpack import pack_bits


@pytest.fixture(scope="module")
def tower():  # type: ignore[no-untyped-def]
    clip, preprocess = tiny_clip()
    return clip.visual.eval(), preprocess


def _weights(tower, seed: int) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(seed)
    return {key: value + 0.05 * torch.randn(value.shape, generator=generator) for key, value in tower.state_dict().items()}


def _heads(tower) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(9)
    return [torch.nn.functional.normalize(torch.randn(c, tower.output_dim, generator=generator), dim=-1) for c in (3, 5, 4)]


def _server(tower, preprocess, routing, tasks_weights, split: int, router=None) -> SharedTrunkClassifier:  # type: ignore[no-untyped-def]
    def task_weights(task: int, keys: Collection[str]) -> dict[str, torch.Tensor]:
        return {key: tasks_weights[task][key] for key in keys}

    return SharedTrunkClassifier(tower, routing, task_weights, _heads(tower), TASKS, router, preprocess, split)


def test_split_forward_is_the_task_forward_when_the_task_shares_the_trunk(tower) -> None:  # type: ignore[no-untyped-def]
    module, preprocess = tower
    routing = _weights(module, 1)
    images = torch.cat([task_images(t, 4, torch.Generator().manual_seed(t)) for t in range(3)])
    assignment = torch.tensor([0, 1, 2] * 4)
    for split in range(block_count(module)):  # L = all has no task part: the next test
        own = set(keys_after(routing, split))
        # every task differs from the routing model exactly where it continues alone
        tasks_weights = [{key: (value + 0.1 * (t + 1) if key in own else value) for key, value in routing.items()} for t in range(3)]
        server = _server(module, preprocess, routing, tasks_weights, split)
        pixels = preprocess(images)
        with torch.no_grad():
            hidden, _ = server.trunk(pixels)
            for t in range(3):
                full = functional_call(module, tasks_weights[t], (pixels,))
                torch.testing.assert_close(server.continue_task(t, hidden, pixels), full, rtol=1e-5, atol=1e-5)
            prediction = server.predict(images, assignment)
            expected = torch.tensor([int(logits(functional_call(module, tasks_weights[int(t)], (pixels[i : i + 1],)), _heads(module)[int(t)]).argmax())
                                     for i, t in enumerate(assignment)])
        assert torch.equal(prediction.classes, expected), f"split {split}"


def test_split_at_all_blocks_is_the_routing_model_with_the_task_head(tower) -> None:  # type: ignore[no-untyped-def]
    module, preprocess = tower
    routing, other = _weights(module, 1), _weights(module, 2)
    blocks = block_count(module)
    server = _server(module, preprocess, routing, [other] * 3, blocks)
    images = torch.cat([task_images(t, 4, torch.Generator().manual_seed(t)) for t in range(3)])
    assignment = torch.tensor([2, 0, 1] * 4)
    with torch.no_grad():
        features = functional_call(module, routing, (preprocess(images),))
        torch.testing.assert_close(SplitTower(module).forward(routing, preprocess(images)), features)
        expected = torch.tensor([int(logits(features[i : i + 1], _heads(module)[int(t)]).argmax()) for i, t in enumerate(assignment)])
        assert torch.equal(server.predict(images, assignment).classes, expected)


def test_routing_on_block_features_picks_the_right_task(tower) -> None:  # type: ignore[no-untyped-def]
    module, preprocess = tower
    routing = _weights(module, 1)
    generator = torch.Generator().manual_seed(3)
    train = [task_images(t, 40, generator) for t in range(3)]
    held_in = [task_images(t, 10, generator) for t in range(3)]
    split_tower = SplitTower(module)

    def extract(images: torch.Tensor) -> list[torch.Tensor]:
        return features_by_split(split_tower, routing, preprocess, images, 16)

    fitted = calibrate_every_split("mad", TASKS, train, held_in, extract, samples=16, eps=1e-4, seed=0, quantile=0.99)
    assert len(fitted) == block_count(module) + 1
    test = torch.cat([task_images(t, 8, generator) for t in range(3)])
    truth = torch.arange(3).repeat_interleave(8)
    for split, calibrated in enumerate(fitted):
        server = _server(module, preprocess, routing, [routing] * 3, split, calibrated.router)
        assert torch.equal(server.predict(test).tasks, truth), f"split {split}"


def test_calibration_at_the_last_split_sees_the_final_features(tower) -> None:  # type: ignore[no-untyped-def]
    module, preprocess = tower
    routing = _weights(module, 1)
    images = task_images(0, 6, torch.Generator().manual_seed(4))
    by_split = features_by_split(SplitTower(module), routing, preprocess, images, 4)
    with torch.no_grad():
        torch.testing.assert_close(by_split[-1], functional_call(module, routing, (preprocess(images),)))


@pytest.mark.parametrize("split", [-1, 99, True, 1.5])
def test_a_split_outside_the_blocks_is_one_clear_error(tower, split) -> None:  # type: ignore[no-untyped-def]
    module, preprocess = tower
    routing = _weights(module, 1)
    with pytest.raises(MergeflowError, match=r"shared-trunk split .* is not a block count in \[0, \d+\]"):
        _server(module, preprocess, routing, [routing] * 3, split)


def test_a_tower_without_blocks_is_refused() -> None:
    with pytest.raises(MergeflowError, match="not an open_clip VisionTransformer"):
        block_count(torch.nn.Linear(2, 2))


def test_packed_bank_rebuilds_only_the_asked_keys() -> None:
    generator = torch.Generator().manual_seed(5)
    merged = {"a": torch.randn(3, 4, generator=generator), "b": torch.randn(5, generator=generator)}
    packed = [{key: pack_bits(torch.rand(value.shape, generator=generator) < 0.5) for key, value in merged.items()}]
    bank = PackedMaskBank(["t"], merged, packed, {key: tuple(value.shape) for key, value in merged.items()}, {"t": 0.7})
    every = bank.task_delta(0)
    only = bank.task_delta(0, {"b"})
    assert list(only) == ["b"] and torch.equal(only["b"], every["b"])
