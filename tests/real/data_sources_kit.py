"""Tiny datasets written in exactly the public on-disk formats, for the data-source tests.

Six 5x4 RGB images of three classes; every format holds the same pixels and labels, so each test can check that a
reference reads them back unchanged. Formats: a ``datasets.DatasetDict`` saved with ``save_to_disk``; the same as
Parquet files in the hub's layout (``data/<split>-00000-of-00001.parquet``, written by ``Dataset.to_parquet``, which
puts the features into the Parquet schema as the hub's files carry them); an ImageFolder of PNGs; and a torchvision
``MNIST`` root (``MNIST/raw/`` idx files, big-endian, the format of the original distribution).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog", "eel")
TRAIN_LABELS = (0, 1, 2, 0, 1, 2)
TEST_LABELS = (2, 0, 1)  # every class present: an ImageFolder split lacking one would renumber the rest


def pixels(n: int, offset: int = 0) -> list[np.ndarray]:
    """``n`` distinct 4x5 RGB images (every pixel and channel differs between images)."""
    base = np.arange(4 * 5 * 3, dtype=np.int64).reshape(4, 5, 3)
    return [((base * 3 + 37 * (i + offset)) % 256).astype(np.uint8) for i in range(n)]


def splits() -> dict[str, tuple[list[np.ndarray], tuple[int, ...]]]:
    return {"train": (pixels(len(TRAIN_LABELS)), TRAIN_LABELS), "test": (pixels(len(TEST_LABELS), offset=10), TEST_LABELS)}


def hf_dataset_dict(label_feature: str = "classlabel"):  # -> datasets.DatasetDict (imported lazily)
    """The tiny data as a ``DatasetDict`` with an ``Image`` feature and a ``ClassLabel`` (or plain int64) label."""
    import datasets

    label = datasets.ClassLabel(names=list(CLASSES)) if label_feature == "classlabel" else datasets.Value("int64")
    features = datasets.Features({"image": datasets.Image(), "label": label})
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"image": [Image.fromarray(p) for p in images], "label": list(labels)}, features=features)
        for split, (images, labels) in splits().items()
    })


def write_save_to_disk(root: Path) -> Path:
    hf_dataset_dict().save_to_disk(str(root))
    return root


def write_hub_parquet(root: Path, label_feature: str = "classlabel", config: str | None = None) -> Path:
    """``<root>/data/<split>-00000-of-00001.parquet`` (or ``<root>/<config>/...`` with a README declaring the config)."""
    folder = root / (config or "data")
    folder.mkdir(parents=True)
    for split, dataset in hf_dataset_dict(label_feature).items():
        dataset.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    if config:
        files = "".join(f"  - split: {split}\n    path: {config}/{split}-*\n" for split in splits())
        (root / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{files}---\n")
    return root


def write_image_folder(root: Path) -> Path:
    for split, (images, labels) in splits().items():
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            path = root / split / CLASSES[label] / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
    return root


def grey(image: np.ndarray) -> np.ndarray:
    """The grey image the MNIST root stores for an RGB one (its red channel; read back as R = G = B)."""
    return image[..., 0]


def write_mnist_root(root: Path) -> Path:
    """torchvision's MNIST layout: ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = splits()[split]
        h, w = images[0].shape[:2]
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">iiii", 2051, len(images), h, w) + b"".join(grey(im).tobytes() for im in images))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, len(labels)) + bytes(labels))
    return root
