"""The validation rule (TALL's carve, bit for bit), the content hash, and the 20 TALL tasks as data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from data_sources_kit import hf_dataset_dict, write_hub_parquet, write_image_folder, write_mnist_root

from mergeflow.data.sources.content_hash import hash_files, reference_content_hash
from mergeflow.data.sources.opening import open_split
from mergeflow.data.sources.reference import DatasetRef
from mergeflow.data.sources.tasks_tall import TALL_SUITES, TALL_TASKS, tall_suite
from mergeflow.data.sources.validation import carve_validation, split_validation
from mergeflow.errors import MergeflowError

# --- validation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "expected"), [(10, 1), (99, 9), (1000, 100), (60000, 5000)])
def test_the_carve_is_ten_percent_at_most_5000_disjoint_and_complete(n: int, expected: int) -> None:
    train, validation = carve_validation(range(n))
    assert len(validation) == expected and len(train) == n - expected
    assert not set(train) & set(validation) and sorted(train + validation) == list(range(n))


def test_the_carve_is_torch_random_split_with_seed_0_as_tall_masks_call_it() -> None:
    n = 60000  # MNIST's train split: TALL masks assert that the first train index of MNISTVal is 36044
    train, validation = carve_validation(range(n))
    assert train[0] == 36044
    subsets = torch.utils.data.random_split(range(n), [n - 5000, 5000], generator=torch.Generator().manual_seed(0))
    assert (train, validation) == (list(subsets[0].indices), list(subsets[1].indices))


def test_the_carve_is_deterministic_and_maps_through_the_given_indices() -> None:
    rows = list(range(100, 200))
    assert carve_validation(rows) == carve_validation(rows)
    train, validation = carve_validation(rows)
    assert set(train) | set(validation) == set(rows)
    positions_train, positions_val = carve_validation(range(100))
    assert validation == [rows[i] for i in positions_val] and train == [rows[i] for i in positions_train]


def test_an_own_validation_split_leaves_train_whole() -> None:
    assert split_validation(range(5), [0, 1]) == ([0, 1, 2, 3, 4], [0, 1])
    assert split_validation(range(20)) == carve_validation(range(20))


def test_a_train_split_too_small_to_carve_says_to_name_a_validation_split() -> None:
    with pytest.raises(MergeflowError, match="validation_split"):
        carve_validation(range(9))


# --- content hash -------------------------------------------------------------------------------------------------


def test_the_file_hash_follows_content_not_location(tmp_path: Path) -> None:
    a = write_image_folder(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    (b / ".cache").mkdir()
    (b / ".cache" / "meta.json").write_text("{}")  # hidden tool files do not count
    assert hash_files(a) == hash_files(b) and hash_files(a).startswith("sha256:")

    png = next((b / "train" / "cat").iterdir())
    data = bytearray(png.read_bytes())
    data[-20] ^= 1
    png.write_bytes(bytes(data))
    assert hash_files(a) != hash_files(b)
    shutil.rmtree(b)
    shutil.copytree(a, b)
    png = next((b / "train" / "cat").iterdir())
    png.rename(png.with_name("renamed.png"))
    assert hash_files(a) != hash_files(b)


def test_two_saves_of_the_same_data_hash_alike(tmp_path: Path) -> None:
    """``state.json`` holds a fingerprint each ``save_to_disk`` redraws; the hash leaves it out."""
    hf_dataset_dict().save_to_disk(str(tmp_path / "one"))
    hf_dataset_dict().save_to_disk(str(tmp_path / "two"))
    one = DatasetRef(kind="disk", path=str(tmp_path / "one"), image_column="image")
    two = DatasetRef(kind="disk", path=str(tmp_path / "two"), image_column="image")
    assert reference_content_hash(one) == reference_content_hash(two)
    other = hf_dataset_dict()
    other["test"] = other["test"].select([1, 0, 2])
    other.save_to_disk(str(tmp_path / "three"))
    assert reference_content_hash(DatasetRef(kind="disk", path=str(tmp_path / "three"), image_column="image")) != reference_content_hash(one)


def test_opening_a_hub_folder_leaves_its_hash_unchanged(tmp_path: Path) -> None:
    ref = DatasetRef(kind="disk", path=str(write_hub_parquet(tmp_path / "hub")), image_column="image")
    before = reference_content_hash(ref)
    open_split(ref, "train", cache_dir=str(tmp_path / "cache"))[0]
    assert reference_content_hash(ref) == before


def test_a_torchvision_hash_reads_only_its_class_files(tmp_path: Path) -> None:
    root = write_mnist_root(tmp_path / "root")
    ref = DatasetRef(kind="torchvision", dataset_class="MNIST", path=str(root))
    before = reference_content_hash(ref)
    (root / "gtsrb").mkdir()
    (root / "gtsrb" / "other.bin").write_bytes(b"another dataset in the same root")
    assert reference_content_hash(ref) == before
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\0")
    assert reference_content_hash(ref) != before


def test_a_huggingface_hash_reads_the_prepared_cache_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    hf_dataset_dict().save_to_disk(str(tmp_path / "cached"))  # stands in for the Arrow cache load_dataset prepares
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, *, split, cache_dir=None: datasets.load_from_disk(str(tmp_path / "cached" / split)))
    ref = DatasetRef(kind="huggingface", id="tanganke/eurosat", image_column="image")
    first = reference_content_hash(ref)
    assert first == reference_content_hash(ref)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, *, split, cache_dir=None: datasets.load_from_disk(str(tmp_path / "cached" / "train")))
    assert reference_content_hash(ref) != first  # the test split now reads other rows


def test_hashing_an_empty_or_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MergeflowError, match="not a folder"):
        hash_files(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MergeflowError, match="no files"):
        hash_files(tmp_path / "empty")


# --- the TALL tasks -----------------------------------------------------------------------------------------------


def test_the_suites_are_the_papers_8_14_and_20_tasks() -> None:
    assert [len(TALL_SUITES[s]) for s in ("tall8", "tall14", "tall20")] == [8, 14, 20]
    assert TALL_SUITES["tall8"] == ("sun397", "stanford_cars", "resisc45", "eurosat", "svhn", "gtsrb", "mnist", "dtd")
    assert TALL_SUITES["tall14"][:8] == TALL_SUITES["tall8"] and TALL_SUITES["tall20"][:14] == TALL_SUITES["tall14"]
    assert [TALL_TASKS[t].paper_name for t in TALL_SUITES["tall20"][14:]] == ["EMNIST", "CIFAR10", "Food101", "FashionMNIST", "RenderedSST2", "KMNIST"]
    assert list(tall_suite("tall14")) == list(TALL_SUITES["tall14"])
    with pytest.raises(MergeflowError, match="known: tall8, tall14, tall20"):
        tall_suite("tall12")


def test_every_task_reference_is_a_valid_json_able_hub_reference() -> None:
    for task in TALL_TASKS.values():
        ref = task.reference
        assert ref.kind == "huggingface" and DatasetRef.from_dict(ref.to_dict()) == ref
        assert task.class_names is None or len(task.class_names) == task.num_classes
    assert TALL_TASKS["svhn"].reference.config == "cropped_digits"
    assert TALL_TASKS["food101"].reference.test_split == "validation"
    fer = TALL_TASKS["fer2013"].reference
    assert (fer.image_column, fer.label_column) == ("jpg", "cls")


def test_the_templates_are_the_clip_papers_lists() -> None:
    counts = {"cifar10": 18, "cifar100": 18, "resisc45": 18, "stanford_cars": 8, "dtd": 8, "fer2013": 6, "eurosat": 3,
              "gtsrb": 3, "sun397": 2, "stl10": 2, "mnist": 1, "food101": 1, "oxford_flowers102": 1, "oxford_iiit_pet": 1,
              "pcam": 1, "rendered_sst2": 1}
    assert {name: len(TALL_TASKS[name].templates) for name in counts} == counts
    assert all(TALL_TASKS[name].templates_origin == "clip_paper" for name in counts)
    assert {n for n, t in TALL_TASKS.items() if t.templates_origin == "mergeflow"} == {"svhn", "emnist_letters", "fashion_mnist", "kmnist"}
    assert TALL_TASKS["mnist"].templates == ('a photo of the number: "{}".',)
    assert TALL_TASKS["resisc45"].templates[:3] == ("satellite imagery of {}.", "aerial imagery of {}.", "satellite photo of {}.")
    assert TALL_TASKS["resisc45"].templates[-1] == "aerial view of the {}."
    assert TALL_TASKS["dtd"].templates[4] == "a photo of the {} texture."
    assert all(len(set(t.templates)) == len(t.templates) for t in TALL_TASKS.values())


def _fake_hub(monkeypatch: pytest.MonkeyPatch, columns: tuple[str, str], label_feature) -> None:
    """``datasets.load_dataset`` answering any id with tiny rows under the given (image, label) column names."""
    import datasets
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.zeros((2, 2, 3), np.uint8))
    features = datasets.Features({columns[0]: datasets.Image(), columns[1]: label_feature})
    sizes = {"train": 20, "test": 5}
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, *, split, cache_dir=None: datasets.Dataset.from_dict(
        {columns[0]: [image] * sizes[split], columns[1]: [i % 3 for i in range(sizes[split])]}, features=features))


def test_fer2013_has_integer_labels_and_takes_its_written_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from mergeflow.data.sources.opening import open_task
    from mergeflow.data.sources.tasks_tall import FER2013_WDS_CLASSES

    _fake_hub(monkeypatch, ("jpg", "cls"), datasets.Value("int64"))
    splits = open_task(TALL_TASKS["fer2013"])
    assert splits.class_names == FER2013_WDS_CLASSES
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (18, 2, 5)
    assert splits.validation[0].input.size == (2, 2)


def test_a_dataset_with_another_class_count_than_the_paper_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from mergeflow.data.sources.opening import open_task

    _fake_hub(monkeypatch, ("image", "label"), datasets.ClassLabel(names=["a", "b", "c"]))
    with pytest.raises(MergeflowError, match="has 3 classes, the task has 43"):
        open_task(TALL_TASKS["gtsrb"])
    with pytest.raises(MergeflowError, match="3 classes but the task definition lists 10"):
        open_task(TALL_TASKS["eurosat"])


def test_references_and_task_tables_import_without_torch_or_datasets() -> None:
    """params checks validate references: they must not pay for torch, torchvision or datasets."""
    import os
    import subprocess
    import sys

    import mergeflow

    src = str(Path(mergeflow.__file__).resolve().parents[1])  # this checkout's src/, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = ("import sys, mergeflow.data.sources.tasks_tall, mergeflow.data.sources.opening;"
            "print(sorted(m for m in ('torch', 'torchvision', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"
