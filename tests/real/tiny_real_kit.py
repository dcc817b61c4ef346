"""The tiny real setting, built in the public formats: what profiles/tiny_real.yaml points at (paths relative to the
project root, under ``real_data/``).

- ``real_data/shapes``: a torchvision ImageFolder of PNGs (``train/`` and ``test/``, one folder per class);
- ``real_data/colors``: a ``datasets.DatasetDict`` written by ``save_to_disk`` (an ``Image`` column, a ``ClassLabel``);
- ``real_data/clip``: a random tiny Hugging Face ``CLIPModel`` and its tokenizer, written by ``save_pretrained``
  (the open_clip model ``mf-clip-tiny-quickgelu`` has its architecture);
- ``real_data/tall/ViT-tiny/ShapesVal/nonlinear_finetuned.pt``: a brought expert in the TALL-masks layout (a state
  dict of open_clip keys under ``model.``, text-tower leftovers included), and a second one for a changed-checkpoint
  rerun.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from clip_kit import tiny_hf_clip, tiny_tokenizer
from PIL import Image

SHAPES = ("circle", "square")
COLORS = ("red", "blue", "green")
EXPERT = Path("real_data/tall/ViT-tiny/ShapesVal/nonlinear_finetuned.pt")
EXPERT_B = Path("real_data/tall/ViT-tiny-b/ShapesVal/nonlinear_finetuned.pt")


def _shape_image(kind: int, rng: np.random.Generator, size: int = 40) -> Image.Image:
    pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    cy, cx, r = rng.integers(14, 26), rng.integers(14, 26), rng.integers(7, 12)
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r if kind == 0 else (abs(yy - cy) < r) & (abs(xx - cx) < r)
    pixels[mask] = 230
    return Image.fromarray(pixels)


def _color_image(kind: int, rng: np.random.Generator, size: int = 36) -> Image.Image:
    pixels = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
    pixels[..., kind] = rng.integers(170, 255, size=(size, size), dtype=np.uint8)
    return Image.fromarray(pixels)


def write_image_folder(root: Path, counts: dict[str, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        for index in range(count):
            label = index % len(SHAPES)
            folder = root / split / SHAPES[label]
            folder.mkdir(parents=True, exist_ok=True)
            _shape_image(label, rng).save(folder / f"{index:03d}.png")


def write_disk_dataset(root: Path, counts: dict[str, int], seed: int = 1) -> None:
    import datasets

    rng = np.random.default_rng(seed)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(COLORS))})
    splits = {}
    for split, count in counts.items():
        labels = [index % len(COLORS) for index in range(count)]
        splits[split] = datasets.Dataset.from_dict(
            {"image": [_color_image(label, rng) for label in labels], "label": labels}, features=features)
    datasets.DatasetDict(splits).save_to_disk(str(root))


def write_hf_clip(folder: Path) -> dict[str, torch.Tensor]:
    """The tiny CLIPModel and tokenizer; returns its image tower in open_clip keys (for the brought experts)."""
    from mergeflow.checkpoints.hf_clip import hf_clip_vision_state

    tokenizer = tiny_tokenizer(folder.parent / "tokenizer-src")
    model = tiny_hf_clip(tokenizer, seed=0)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return hf_clip_vision_state(model)


def write_tall_expert(path: Path, base_vision: dict[str, torch.Tensor], seed: int) -> None:
    """A TALL-masks ``nonlinear_finetuned.pt``: the base tower moved a little, under ``model.``, with text leftovers."""
    generator = torch.Generator().manual_seed(seed)
    state = {f"model.{key}": value + 0.02 * torch.randn(value.shape, generator=generator)
             for key, value in base_vision.items()}
    state["model.logit_scale"] = torch.tensor(4.6)
    state["model.token_embedding.weight"] = torch.zeros(8, 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def build_tiny_real(project: Path) -> None:
    """Everything profiles/tiny_real.yaml reads, under ``project / "real_data"``."""
    data = project / "real_data"
    write_image_folder(data / "shapes", {"train": 40, "test": 12})
    write_disk_dataset(data / "colors", {"train": 30, "test": 9})
    vision = write_hf_clip(data / "clip")
    write_tall_expert(project / EXPERT, vision, seed=1)
    write_tall_expert(project / EXPERT_B, vision, seed=2)
