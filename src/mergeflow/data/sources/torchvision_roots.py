"""The torchvision dataset classes a reference may name, and how each takes its split (torch-free: params checks use it).

An allow-list rather than ``getattr(torchvision.datasets, name)``: the constructors differ (``train=True`` for the
MNIST family, ``split="train"`` for most others, no split at all for EuroSAT and SUN397), and a name from params.yaml
should never pick an arbitrary class. Every class here is built with ``download=False``: the data must already be on
disk. Deliberately left out:

- ``CIFAR10`` / ``CIFAR100``: torchvision reads their batches with ``pickle.load``; mergeflow never unpickles (use the
  Hugging Face ids of ``tasks_tall`` or an ImageFolder export instead).
- ``EuroSAT`` / ``SUN397``: torchvision offers them without any split; the papers' splits are ImageFolder layouts (use
  the ``image_folder`` kind) or the Hugging Face ids.

Split names and data folders were read from torchvision 0.29's sources (``verify_str_arg`` calls, ``_base_folder``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TorchvisionRoot:
    """How one torchvision class is constructed, and which files under its root hold its data.

    ``split_style``: ``"train_flag"`` passes ``train=(split == "train")``; ``"split_arg"`` passes ``split=split``.
    ``variant_kwarg``: the constructor argument a reference's ``config`` fills (EMNIST's ``split="letters"``).
    ``files``: glob patterns, relative to the root, of the class's own files (what the content hash reads).
    ``class_names``: the names in the class's own label order where torchvision gives none (FER2013: the Kaggle CSV's
    numbering, which is not clip_benchmark's) or gives display strings rather than names (MNIST's ``"0 - zero"``,
    which would read "a photo of the number: "0 - zero"." in a prompt); ``None`` keeps the instance's ``classes``.
    """

    split_style: Literal["train_flag", "split_arg"]
    splits: tuple[str, ...]
    files: tuple[str, ...]
    variant_kwarg: str | None = None
    variants: tuple[str, ...] = ()
    class_names: tuple[str, ...] | None = None


def _mnist_family(name: str, class_names: tuple[str, ...] | None = None) -> TorchvisionRoot:
    return TorchvisionRoot("train_flag", ("train", "test"), (f"{name}/**/*",), class_names=class_names)


# The Kaggle challenge's numbering (torchvision reads its CSVs as they are): 0 angry, 1 disgust, 2 fear, 3 happy,
# 4 sad, 5 surprise, 6 neutral, written as clip_benchmark's prompt words.
FER2013_KAGGLE_CLASSES = ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral")


TORCHVISION_ROOTS: dict[str, TorchvisionRoot] = {
    "MNIST": _mnist_family("MNIST", tuple(str(digit) for digit in range(10))),
    "FashionMNIST": _mnist_family("FashionMNIST"),
    "KMNIST": _mnist_family("KMNIST"),
    "EMNIST": TorchvisionRoot("train_flag", ("train", "test"), ("EMNIST/**/*",), variant_kwarg="split",
                              variants=("byclass", "bymerge", "balanced", "letters", "digits", "mnist")),
    "SVHN": TorchvisionRoot("split_arg", ("train", "test", "extra"), ("*_32x32.mat",)),
    "GTSRB": TorchvisionRoot("split_arg", ("train", "test"), ("gtsrb/**/*",)),
    "DTD": TorchvisionRoot("split_arg", ("train", "val", "test"), ("dtd/**/*",)),
    "StanfordCars": TorchvisionRoot("split_arg", ("train", "test"), ("stanford_cars/**/*",)),
    "Flowers102": TorchvisionRoot("split_arg", ("train", "val", "test"), ("flowers-102/**/*",)),
    "OxfordIIITPet": TorchvisionRoot("split_arg", ("trainval", "test"), ("oxford-iiit-pet/**/*",)),
    "PCAM": TorchvisionRoot("split_arg", ("train", "val", "test"), ("pcam/**/*",)),
    "FER2013": TorchvisionRoot("split_arg", ("train", "test"), ("fer2013/**/*",), class_names=FER2013_KAGGLE_CLASSES),
    "Food101": TorchvisionRoot("split_arg", ("train", "test"), ("food-101/**/*",)),
    "RenderedSST2": TorchvisionRoot("split_arg", ("train", "val", "test"), ("rendered-sst2/**/*",)),
    "STL10": TorchvisionRoot("split_arg", ("train", "test"), ("stl10_binary/**/*",)),
}
