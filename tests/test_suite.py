"""The offline vision suite: deterministic, balanced, 32x32 RGB, and with no image shared between splits."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mergeflow.data.suites import SUITES, VISION_TASKS, task_spec
from mergeflow.data.task_spec import SPLITS
from mergeflow.data.vision_tasks.glyphs import _handwritten_pool
from mergeflow.errors import MergeflowError

SIZES = {"train": 60, "val": 20, "test": 40}


@pytest.fixture(scope="module")
def splits() -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, list[str]]]]:
    return {name: {split: spec.make_split(split, SIZES[split], 0, 32) for split in SPLITS} for name, spec in VISION_TASKS.items()}


def test_suite_has_at_least_eight_tasks_with_honest_origins() -> None:
    assert len(SUITES["vision8"]) >= 8
    origins = {spec.origin for spec in VISION_TASKS.values()}
    assert origins == {"real", "generated"}
    assert VISION_TASKS["handwritten_digits"].origin == "real" and VISION_TASKS["photo_patches"].origin == "real"


@pytest.mark.parametrize("task", sorted(VISION_TASKS))
def test_split_shapes_and_balance(task: str, splits) -> None:  # type: ignore[no-untyped-def]
    spec = VISION_TASKS[task]
    for split in SPLITS:
        images, labels, ids = splits[task][split]
        assert images.shape == (SIZES[split], 32, 32, 3) and images.dtype == np.uint8
        counts = np.bincount(labels, minlength=spec.num_classes)
        assert counts.max() - counts.min() <= 1, f"{task}/{split} is unbalanced: {counts}"
        assert len(set(ids)) == len(ids)
        assert images.std() > 10, f"{task}/{split} images are nearly constant"


@pytest.mark.parametrize("task", sorted(VISION_TASKS))
def test_generation_is_deterministic_and_seed_dependent(task: str, splits) -> None:  # type: ignore[no-untyped-def]
    again = VISION_TASKS[task].make_split("val", SIZES["val"], 0, 32)
    first = splits[task]["val"]
    assert np.array_equal(again[0], first[0]) and np.array_equal(again[1], first[1]) and again[2] == first[2]
    other_seed = VISION_TASKS[task].make_split("val", SIZES["val"], 1, 32)
    assert not np.array_equal(other_seed[0], first[0])


@pytest.mark.parametrize("task", sorted(VISION_TASKS))
def test_no_image_is_shared_between_splits(task: str, splits) -> None:  # type: ignore[no-untyped-def]
    hashes = {split: {hashlib.sha1(img.tobytes()).hexdigest() for img in splits[task][split][0]} for split in SPLITS}
    assert not hashes["train"] & hashes["val"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]


def test_real_handwritten_digits_are_partitioned_by_source_image() -> None:
    pools = {split: set(_handwritten_pool(split, 0).tolist()) for split in SPLITS}
    assert not pools["train"] & pools["val"] and not pools["train"] & pools["test"] and not pools["val"] & pools["test"]
    assert sum(len(p) for p in pools.values()) == 1797


def test_photo_patches_come_from_disjoint_bands(splits) -> None:  # type: ignore[no-untyped-def]
    from mergeflow.data.vision_tasks.photos import BANDS, load_photo

    for split in SPLITS:
        for sample_id in splits["photo_patches"][split][2]:
            _, photo, _, where, _ = sample_id.split(":")
            x0, rest = where[1:].split("y")
            size = int(rest.split("s")[1])
            width = load_photo(photo).shape[1]
            lo, hi = BANDS[split]
            assert int(lo * width) <= int(x0) and int(x0) + size <= int(hi * width)


def test_confusable_pairs_share_label_spaces_or_style() -> None:
    # The digit tasks share classes but not acquisitions (MNIST vs SVHN): routing must tell them apart.
    assert VISION_TASKS["handwritten_digits"].class_names == VISION_TASKS["house_numbers"].class_names
    assert {"brick", "grass", "gravel"} <= {p for p, _ in __import__("mergeflow.data.vision_tasks.photos", fromlist=["PHOTOS"]).PHOTOS}


def test_every_task_has_its_own_acquisition() -> None:
    """Tasks differ as datasets do, not only in classes: their colour statistics already tell most of them apart."""
    stats = {}
    for name, spec in VISION_TASKS.items():
        images = spec.make_split("train", 64, 0, 32)[0].astype(np.float32) / 255.0
        saturation = (images.max(axis=-1) - images.min(axis=-1)).mean()
        stats[name] = np.array([images.mean(), images.std(axis=(1, 2)).mean(), saturation])
    names = sorted(stats)
    gaps = [np.abs(stats[a] - stats[b]).max() for i, a in enumerate(names) for b in names[i + 1 :]]
    assert min(gaps) > 0.02, "two tasks have the same brightness, contrast and saturation statistics"
    assert stats["handwritten_digits"][2] < 0.02 < stats["house_numbers"][2]  # grey MNIST-like vs colour SVHN-like


def test_unknown_task_names_are_refused() -> None:
    with pytest.raises(MergeflowError, match="known tasks"):
        task_spec("vision8", "mnist")
    with pytest.raises(MergeflowError, match="known suites"):
        task_spec("imagenet", "x")


def test_pretraining_corpus_is_deterministic_captions_kinds_and_shares_no_image_or_source() -> None:
    from mergeflow.data.pretrain_corpus import CORPUS_PHOTOS, KINDS, pretraining_corpus
    from mergeflow.data.vision_tasks.photos import PHOTOS

    images, captions = pretraining_corpus(64, 0, 32)
    again, captions_again = pretraining_corpus(64, 0, 32)
    assert np.array_equal(images, again) and captions == captions_again
    assert images.shape == (64, 32, 32, 3)
    text = " ".join(captions)
    for kind in ("handwriting", "house number", "road sign", "satellite image", "texture", "a photo of", "a scan of"):
        assert kind in text, f"no caption says the kind {kind!r}"
    assert len(KINDS) == 8 and len(set(captions)) > 32
    assert not {name for name, _ in CORPUS_PHOTOS} & {name for name, _ in PHOTOS}  # never the task's photographs
    downstream = {hashlib.sha1(img.tobytes()).hexdigest() for spec in VISION_TASKS.values()
                  for img in spec.make_split("train", 16, 0, 32)[0]}
    assert not downstream & {hashlib.sha1(img.tobytes()).hexdigest() for img in images}
