"""Every kind of dataset reference reads the public formats back unchanged: pixels, labels and class names.

The data are written in exactly the formats users have on disk (data_sources_kit.py); nothing is downloaded. The
``huggingface`` kind is checked with ``datasets.load_dataset`` replaced by a stand-in that records its arguments, as
a hub id cannot be resolved offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_sources_kit import (
    CLASSES,
    grey,
    hf_dataset_dict,
    splits,
    write_hub_parquet,
    write_image_folder,
    write_mnist_root,
    write_save_to_disk,
)

from mergeflow.data.sources.opening import open_split, open_task_splits
from mergeflow.data.sources.reference import DatasetRef
from mergeflow.errors import MergeflowError


def _assert_reads_back(split_data, split_name: str, expect_grey: bool = False, by_class: bool = False) -> None:
    """``by_class``: an ImageFolder lists its rows class by class (then by file name), not in the order written."""
    images, labels = splits()[split_name]
    if by_class:
        order = sorted(range(len(labels)), key=lambda i: labels[i])
        images, labels = [images[i] for i in order], tuple(labels[i] for i in order)
    assert len(split_data) == len(labels)
    for example, image, label in zip(split_data, images, labels, strict=True):
        assert example.input.mode == "RGB"
        want = np.repeat(grey(image)[..., None], 3, axis=-1) if expect_grey else image
        np.testing.assert_array_equal(np.asarray(example.input), want)
        assert example.label == label


def _reference(fmt: str, tmp_path: Path) -> DatasetRef:
    if fmt == "save_to_disk":
        return DatasetRef(kind="disk", path=str(write_save_to_disk(tmp_path / "saved")), image_column="image")
    if fmt == "hub_parquet":
        return DatasetRef(kind="disk", path=str(write_hub_parquet(tmp_path / "hub")), image_column="image")
    if fmt == "hub_parquet_config":
        return DatasetRef(kind="disk", path=str(write_hub_parquet(tmp_path / "hub", config="cropped")), config="cropped", image_column="image")
    assert fmt == "image_folder"
    return DatasetRef(kind="image_folder", path=str(write_image_folder(tmp_path / "folder")))


@pytest.mark.parametrize("fmt", ["save_to_disk", "hub_parquet", "hub_parquet_config", "image_folder"])
def test_each_format_reads_back_the_same_images_labels_and_class_names(fmt: str, tmp_path: Path) -> None:
    ref = _reference(fmt, tmp_path)
    for split in ("train", "test"):
        opened = open_split(ref, split, cache_dir=str(tmp_path / "cache"))
        assert opened.class_names == CLASSES  # from the ClassLabel feature, or the ImageFolder's folders
        _assert_reads_back(opened, split, by_class=fmt == "image_folder")


def test_hub_parquet_files_without_the_readme_find_their_config_folder(tmp_path: Path) -> None:
    root = write_hub_parquet(tmp_path / "hub", config="cropped")
    (root / "README.md").unlink()
    ref = DatasetRef(kind="disk", path=str(root), config="cropped", image_column="image")
    _assert_reads_back(open_split(ref, "test", cache_dir=str(tmp_path / "cache")), "test")


def test_a_torchvision_mnist_root_reads_back_with_digit_names_for_prompts(tmp_path: Path) -> None:
    """torchvision's own MNIST ``classes`` are display strings ("0 - zero"); prompts need the digit."""
    ref = DatasetRef(kind="torchvision", dataset_class="MNIST", path=str(write_mnist_root(tmp_path / "root")))
    for split in ("train", "test"):
        opened = open_split(ref, split)
        assert opened.class_names == tuple(str(d) for d in range(10))
        _assert_reads_back(opened, split, expect_grey=True)


def test_a_torchvision_fer2013_root_takes_the_kaggle_label_order_over_the_tasks_list(tmp_path: Path,
                                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The task's list is clip_benchmark's order (neutral at 4); torchvision's CSV numbers neutral 6. A torchvision
    FER2013 must pair label 6 with "neutral". (torchvision checks the CSVs' md5, so its class is faked here.)"""
    import torchvision.datasets
    from PIL import Image

    from mergeflow.data.sources.tasks_tall import FER2013_WDS_CLASSES

    class FakeFER2013:
        def __init__(self, root: str, split: str) -> None:
            self.samples = [(Image.new("L", (48, 48), 128), label) for label in range(7)]

        def __len__(self) -> int:
            return len(self.samples)

        def __getitem__(self, i: int) -> tuple[Image.Image, int]:
            return self.samples[i]

    monkeypatch.setattr(torchvision.datasets, "FER2013", FakeFER2013)
    (tmp_path / "root").mkdir()
    ref = DatasetRef(kind="torchvision", dataset_class="FER2013", path=str(tmp_path / "root"))
    opened = open_split(ref, "train", class_names=FER2013_WDS_CLASSES)
    assert opened.class_names[opened[6].label] == "neutral" and opened.class_names[4] == "sad"
    assert opened.class_names != FER2013_WDS_CLASSES and sorted(opened.class_names) == sorted(FER2013_WDS_CLASSES)


def test_a_huggingface_reference_calls_load_dataset_with_its_id_config_and_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, *, split=None, cache_dir=None):
        calls.append((path, name, split, cache_dir))
        return hf_dataset_dict()[split]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ref = DatasetRef(kind="huggingface", id="ufldl-stanford/svhn", config="cropped_digits", image_column="image")
    opened = open_split(ref, "test", cache_dir="/cache")
    assert calls == [("ufldl-stanford/svhn", "cropped_digits", "test", "/cache")]
    assert opened.class_names == CLASSES and opened.name == "huggingface:ufldl-stanford/svhn/cropped_digits[test]"
    _assert_reads_back(opened, "test")


def test_integer_labels_take_the_task_definitions_class_names(tmp_path: Path) -> None:
    ref = DatasetRef(kind="disk", path=str(write_hub_parquet(tmp_path / "hub", label_feature="int")), image_column="image")
    opened = open_split(ref, "train", class_names=("a", "b", "c"), cache_dir=str(tmp_path / "cache"))
    assert opened.class_names == ("a", "b", "c")
    _assert_reads_back(opened, "train")
    with pytest.raises(MergeflowError, match="class_names"):
        open_split(ref, "train", cache_dir=str(tmp_path / "cache"))


def test_a_fallback_list_of_another_length_is_refused(tmp_path: Path) -> None:
    ref = DatasetRef(kind="image_folder", path=str(write_image_folder(tmp_path / "folder")))
    with pytest.raises(MergeflowError, match="3 classes but the task definition lists 2"):
        open_split(ref, "train", class_names=("a", "b"))


def test_task_splits_carve_validation_from_train_or_use_the_named_split(tmp_path: Path) -> None:
    import datasets
    from PIL import Image

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))})
    image = Image.fromarray(np.zeros((2, 2, 3), np.uint8))
    def rows(n: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"image": [image] * n, "label": [i % 3 for i in range(n)]}, features=features)
    datasets.DatasetDict({"train": rows(30), "validation": rows(4), "test": rows(5)}).save_to_disk(str(tmp_path / "saved"))

    carved = open_task_splits(DatasetRef(kind="disk", path=str(tmp_path / "saved"), image_column="image"))
    assert (len(carved.train), len(carved.validation), len(carved.test)) == (27, 3, 5)
    assert not {e.index for e in carved.train} & {e.index for e in carved.validation}
    assert "rows of 'train'" in carved.validation_origin

    own = open_task_splits(DatasetRef(kind="disk", path=str(tmp_path / "saved"), image_column="image", validation_split="validation"))
    assert (len(own.train), len(own.validation), len(own.test)) == (30, 4, 5)
    assert own.class_names == CLASSES


def test_splits_with_different_class_folders_are_refused(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "folder")
    for extra in range(10):  # enough rows to carve a validation split
        (root / "train" / "cat" / f"extra{extra}.png").write_bytes((root / "train" / "cat" / "000.png").read_bytes())
    for png in (root / "test" / "eel").iterdir():
        png.unlink()
    (root / "test" / "eel").rmdir()
    with pytest.raises(MergeflowError, match="list different classes"):
        open_task_splits(DatasetRef(kind="image_folder", path=str(root)))


def test_a_reference_survives_json(tmp_path: Path) -> None:
    ref = DatasetRef(kind="huggingface", id="clip-benchmark/wds_fer2013", image_column="jpg", label_column="cls")
    data = json.loads(json.dumps(ref.to_dict()))
    assert data == {"kind": "huggingface", "id": "clip-benchmark/wds_fer2013", "image_column": "jpg", "label_column": "cls"}
    assert DatasetRef.from_dict(data) == ref
    text = DatasetRef(kind="disk", path="/glue", text_columns=("sentence1", "sentence2"), validation_split="validation")
    assert DatasetRef.from_dict(json.loads(json.dumps(text.to_dict()))) == text and text.modality == "text"


# --- a bad reference: one MergeflowError that names what to fix ----------------------------------------------------

@pytest.mark.parametrize(("data", "needle"), [
    ({"kind": "zip", "path": "/x"}, "unknown kind 'zip'"),
    ({"path": "/x"}, "`kind` is missing"),
    ({"kind": "disk", "path": "/x", "image_column": "image", "colour": 1}, "unknown key(s) 'colour'"),
    ({"kind": "disk", "image_column": "image"}, "`path` is missing"),
    ({"kind": "huggingface", "id": "./local", "image_column": "image"}, "use kind `disk`"),
    ({"kind": "huggingface", "id": "a/b"}, "`image_column` (images) or `text_columns`"),
    ({"kind": "huggingface", "id": "a/b", "image_column": "image", "text_columns": ["s"]}, "exactly one input"),
    ({"kind": "image_folder", "path": "/x", "image_column": "image"}, "`image_column` does not apply"),
    ({"kind": "torchvision", "path": "/x", "dataset_class": "CIFAR10"}, "not allowed"),
    ({"kind": "torchvision", "path": "/x", "dataset_class": "OxfordIIITPet"}, "has no split 'train'"),
    ({"kind": "torchvision", "path": "/x", "dataset_class": "EMNIST"}, "needs `config`"),
    ({"kind": "disk", "path": "/x", "image_column": "image", "test_split": "train"}, "must differ"),
    ({"kind": "disk", "path": "/x", "image_column": "image", "text_columns": "sentence"}, "`text_columns` must be a list"),
])
def test_a_bad_reference_names_the_key_to_fix(data: dict, needle: str) -> None:
    with pytest.raises(MergeflowError) as caught:
        DatasetRef.from_dict(data)
    assert needle in str(caught.value)


def test_a_missing_column_is_named_with_the_columns_there(tmp_path: Path) -> None:
    ref = DatasetRef(kind="disk", path=str(write_save_to_disk(tmp_path / "saved")), image_column="img")
    with pytest.raises(MergeflowError, match=r"no column 'img' \(columns: image, label\); set image_column"):
        open_split(ref, "train")


@pytest.mark.parametrize("kind", ["disk", "image_folder", "torchvision"])
def test_a_missing_folder_is_named(kind: str, tmp_path: Path) -> None:
    extra = {"disk": {"image_column": "image"}, "image_folder": {}, "torchvision": {"dataset_class": "MNIST"}}[kind]
    ref = DatasetRef.from_dict({"kind": kind, "path": str(tmp_path / "nowhere"), **extra})
    with pytest.raises(MergeflowError, match="nowhere"):
        open_split(ref, "train")


def test_a_split_the_data_lack_is_named_with_the_ones_there(tmp_path: Path) -> None:
    saved = DatasetRef(kind="disk", path=str(write_save_to_disk(tmp_path / "saved")), image_column="image")
    with pytest.raises(MergeflowError, match="no split 'validation'; its splits: test, train"):
        open_split(saved, "validation")
    folder = DatasetRef(kind="image_folder", path=str(write_image_folder(tmp_path / "folder")))
    with pytest.raises(MergeflowError, match="folders there: test, train"):
        open_split(folder, "val")
    hub = DatasetRef(kind="disk", path=str(write_hub_parquet(tmp_path / "hub")), image_column="image")
    with pytest.raises(MergeflowError, match="Unknown split"):
        open_split(hub, "validation", cache_dir=str(tmp_path / "cache"))


def test_an_empty_torchvision_root_says_download_is_off(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with pytest.raises(MergeflowError, match="download is off"):
        open_split(DatasetRef(kind="torchvision", dataset_class="MNIST", path=str(tmp_path / "root")), "train")


def test_text_columns_read_as_tuples_of_sentences(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                  "idx": datasets.Value("int32"), "label": datasets.ClassLabel(names=["entailment", "not_entailment"])})
    rows = {"sentence1": ["A cat sat.", "It rains."], "sentence2": ["A cat rested.", "It is dry."], "idx": [0, 1], "label": [0, 1]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=features)}).save_to_disk(str(tmp_path / "rte"))
    ref = DatasetRef(kind="disk", path=str(tmp_path / "rte"), text_columns=("sentence1", "sentence2"))
    opened = open_split(ref, "train")
    assert opened.class_names == ("entailment", "not_entailment")
    assert [(e.input, e.label) for e in opened] == [(("A cat sat.", "A cat rested."), 0), (("It rains.", "It is dry."), 1)]
    with pytest.raises(MergeflowError, match="must hold strings"):
        open_split(DatasetRef(kind="disk", path=str(tmp_path / "rte"), text_columns=("sentence1", "idx")), "train")[0]


def test_one_parquet_file_is_the_split_it_is_named_as(tmp_path: Path) -> None:
    file = write_hub_parquet(tmp_path / "hub") / "data" / "test-00000-of-00001.parquet"
    ref = DatasetRef(kind="disk", path=str(file), image_column="image", train_split="test", test_split="unused")
    opened = open_split(ref, "test", cache_dir=str(tmp_path / "cache"))
    assert opened.class_names == CLASSES
    _assert_reads_back(opened, "test")
