"""Patches of real photographs that ship with scikit-image; the class is the photograph a patch comes from.

Each photo is cut into three vertical bands (train 60 %, val 15 %, test 25 % of its width), and a
split's patches are cropped only inside its band, so no pixel is shared between splits. Brick, grass
and gravel make this task confusable with the procedural textures in content; the acquisition is its own: one
camera whose lens darkens the corners (vignetting, 40-80 % in the corners) — without it the base model's features
tell these patches from the textures and the terrain only 85 % of the time (the regime's task-identity probe).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from mergeflow.data.task_spec import TaskSpec, balanced_labels
from mergeflow.data.vision_tasks.acquisition import vignette
from mergeflow.seeding import numpy_rng

PHOTOS: tuple[tuple[str, str], ...] = (
    ("astronaut", "an astronaut"),
    ("coffee", "a cup of coffee"),
    ("chelsea", "a cat"),
    ("rocket", "a rocket"),
    ("brick", "a brick wall"),
    ("grass", "grass"),
    ("gravel", "gravel"),
    ("camera", "a cameraman"),
    ("coins", "coins"),
    ("hubble_deep_field", "galaxies in deep space"),
)
BANDS = {"train": (0.0, 0.6), "val": (0.6, 0.75), "test": (0.75, 1.0)}


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """One scikit-image sample photo as (H, W, 3) uint8 (grey photos are replicated to RGB)."""
    from skimage import data as skdata  # lazy: scikit-image is slow to import

    img = np.asarray(getattr(skdata, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def make_photo_patches(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Random square crops (40-110 px, inside the split's band), flipped, brightness-jittered, resized to ``size``,
    seen through the task's lens (vignetting)."""
    rng = numpy_rng(seed, "photo_patches", split)
    labels = balanced_labels(rng, n, len(PHOTOS))
    images, ids = [], []
    lo, hi = BANDS[split]
    for i, label in enumerate(labels):
        photo = load_photo(PHOTOS[int(label)][0])
        h, w, _ = photo.shape
        x_lo, x_hi = int(lo * w), int(hi * w)
        crop = int(min(rng.integers(40, 111), x_hi - x_lo, h))
        x0 = int(rng.integers(x_lo, x_hi - crop + 1))
        y0 = int(rng.integers(0, h - crop + 1))
        patch = Image.fromarray(photo[y0 : y0 + crop, x0 : x0 + crop]).resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(patch, dtype=np.float32) * rng.uniform(0.85, 1.15)
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        arr = arr * vignette(size, rng.uniform(0.4, 0.8))
        images.append(np.clip(arr, 0, 255).astype(np.uint8))
        ids.append(f"skimage:{PHOTOS[int(label)][0]}:{split}:x{x0}y{y0}s{crop}:{i}")
    return np.stack(images), labels, ids


PHOTO_PATCHES = TaskSpec(
    name="photo_patches",
    class_names=tuple(caption for _, caption in PHOTOS),
    templates=("a photo of {}.", "a close-up photo of {}."),
    origin="real",
    source="crops of 10 real photographs shipped with scikit-image (astronaut, coffee, cat, rocket, brick, grass, gravel, cameraman, coins, Hubble deep field); disjoint bands per split; one vignetting lens",
    make_split=make_photo_patches,
)
