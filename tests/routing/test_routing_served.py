"""Routed serving on a real (tiny, randomly initialised) open_clip encoder and a real bit-packed TALL bank.

Oracle routing must give exactly the task-known predictions (each task's reconstruction with its own head), the
input order must survive grouping, and a router fitted on the served features must route separable tasks right.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_tower import TASKS, task_images, tiny_clip

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import reconstruct
from mergeflow.merging.bankfile import MaskBankFile, write_mask_bank
from mergeflow.merging.common import add_to_base
from mergeflow.merging.tall import tall_ta
from mergeflow.models.classifier import ImageClassifier
from mergeflow.routing.routers import fit_router
from mergeflow.routing.served import RoutedClassifier, StaticClassifier
from mergeflow.routing.stream import mixed_stream, per_task_scores, serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    clip, preprocess = tiny_clip()
    base = {key: value.detach().clone() for key, value in clip.visual.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    task_vectors = {
        task: {key: 0.05 * torch.randn(value.shape, generator=generator) for key, value in base.items() if value.is_floating_point()}
        for task in TASKS
    }
    bank = tall_ta(task_vectors, lam=0.4)
    path = Path(tmp_path_factory.mktemp("bank")) / "bank.safetensors"
    write_mask_bank(path, bank, method="tall_ta")
    packed = MaskBankFile(path).load_packed()
    heads = [torch.nn.functional.normalize(torch.randn(classes, clip.visual.output_dim, generator=generator), dim=-1)
             for classes in (3, 5, 4)]
    averaged = add_to_base(base, {key: sum(tv[key] for tv in task_vectors.values()) / len(TASKS) for key in task_vectors[TASKS[0]]})
    return clip, base, bank, packed, heads, preprocess, averaged


def _server(served, router=None) -> RoutedClassifier:  # type: ignore[no-untyped-def]
    clip, base, _, packed, heads, preprocess, averaged = served
    return RoutedClassifier(clip.visual, averaged, lambda t: add_to_base(base, packed.task_delta(t)), heads, TASKS, router, preprocess)


def test_oracle_routing_reproduces_task_known_predictions_in_input_order(served) -> None:  # type: ignore[no-untyped-def]
    clip, base, bank, _, heads, preprocess, _ = served
    generator = torch.Generator().manual_seed(2)
    images = torch.cat([task_images(t, 6, generator) for t in range(len(TASKS))])
    assignment = torch.tensor([t for t in range(len(TASKS)) for _ in range(6)])
    order = torch.randperm(len(images), generator=generator)  # mixed batch: groups interleave
    prediction = _server(served).predict(images[order], assignment[order])
    assert torch.equal(prediction.tasks, assignment[order])
    for index, task in enumerate(TASKS):
        known = ImageClassifier(clip.visual, heads[index], preprocess.image_size, preprocess.mean, preprocess.std)
        known.encoder.load_state_dict(reconstruct(base, bank, task))
        with torch.no_grad():
            expected = known(images[order][assignment[order] == index]).argmax(dim=-1)
        assert torch.equal(prediction.classes[assignment[order] == index], expected)
    clip.visual.load_state_dict(base)  # the module is shared by the fixture


def test_router_on_served_features_routes_separable_tasks(served) -> None:  # type: ignore[no-untyped-def]
    _, _, _, _, _, preprocess, averaged = served
    server = _server(served)
    generator = torch.Generator().manual_seed(3)
    calibration = [server.encoder(averaged, preprocess(task_images(t, 16, generator))) for t in range(len(TASKS))]
    router = fit_router("mad", TASKS, calibration, eps=1e-2)
    routed = _server(served, router)
    splits = [(task_images(t, 10, generator), torch.zeros(10, dtype=torch.int64)) for t in range(len(TASKS))]
    stream = mixed_stream(splits, torch.Generator().manual_seed(4))
    prediction, seconds = serve(lambda images, tasks: routed.predict(images), stream, 7, "test")
    scores = per_task_scores(stream, prediction, TASKS)
    assert seconds > 0
    assert scores["routing_accuracy"] == dict.fromkeys(TASKS, 1.0)


def test_misrouted_inputs_count_as_wrong_even_when_the_class_index_matches(served) -> None:  # type: ignore[no-untyped-def]
    clip, _, _, _, heads, preprocess, averaged = served
    generator = torch.Generator().manual_seed(5)
    splits = [(task_images(t, 4, generator), torch.zeros(4, dtype=torch.int64)) for t in range(2)]
    stream = mixed_stream(splits, torch.Generator().manual_seed(6))
    static = StaticClassifier(clip.visual, averaged, heads, preprocess)
    prediction = static.predict(stream.images, stream.tasks)
    wrong_task = type(prediction)(1 - prediction.tasks, torch.zeros_like(prediction.classes))  # every label is 0
    scores = per_task_scores(stream, wrong_task, TASKS[:2])
    assert scores["accuracy"] == {TASKS[0]: 0.0, TASKS[1]: 0.0}
    right_task = type(prediction)(prediction.tasks, torch.zeros_like(prediction.classes))
    assert per_task_scores(stream, right_task, TASKS[:2])["accuracy"] == {TASKS[0]: 1.0, TASKS[1]: 1.0}


def test_router_and_bank_must_agree_on_tasks(served) -> None:  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(7)
    router = fit_router("euclidean", ("a", "b", "c"), [torch.randn(4, 8, generator=generator) for _ in range(3)])
    with pytest.raises(MergeflowError, match="recalibrate"):
        _server(served, router)


def test_the_shared_pass_gives_the_served_predictions(served) -> None:  # type: ignore[no-untyped-def]
    """evaluate_routed scores every router but MAD by one shared pass: it must equal serving each router."""
    from mergeflow.routing.served import SwappableEncoder
    from mergeflow.routing.shared_pass import predictions_by_routing

    clip, base, _, packed, heads, preprocess, averaged = served
    generator = torch.Generator().manual_seed(5)
    splits = [(task_images(t, 10, generator), torch.zeros(10, dtype=torch.int64)) for t in range(len(TASKS))]
    stream = mixed_stream(splits, torch.Generator().manual_seed(6))
    encoder = SwappableEncoder(clip.visual)
    with torch.no_grad():
        features = encoder(averaged, preprocess(stream.images))
    calibration = [features[stream.tasks == t][:5] for t in range(len(TASKS))]
    routers = {name: fit_router(name, TASKS, calibration, 1e-2) for name in ("mad", "knn1", "euclidean")}
    assignments = {"oracle": stream.tasks, **{name: router.route(features) for name, router in routers.items()}}

    @torch.no_grad()
    def classify(task: int, rows: torch.Tensor) -> torch.Tensor:
        weights = add_to_base(base, packed.task_delta(task))
        logits = torch.nn.functional.normalize(encoder(weights, preprocess(stream.images[rows])), dim=-1) @ heads[task].T
        return logits.argmax(dim=-1)

    shared = predictions_by_routing(assignments, classify, len(TASKS), batch_size=7)
    for name, router in routers.items():
        alone, _ = serve(lambda images, _, router=router: _server(served, router).predict(images), stream, 7, name)
        assert torch.equal(alone.tasks, shared[name].tasks) and torch.equal(alone.classes, shared[name].classes), name
    clip.visual.load_state_dict(base)
