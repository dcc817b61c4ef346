"""A captioned image corpus for pretraining the built-in backbone, disjoint from every task split.

Its captions carry what CLIP's web captions carry: the *kind* of image ("handwriting of …", "a photo of the house
number …", "a road sign showing …", "a satellite image of …", "a photo of a … texture") and, most of the time, its
content. Each kind is shot with the same acquisition as the downstream task of that kind (``vision_tasks/``), but its
content differs from the task's, so zero-shot transfer is partial, as CLIP's is:

- handwriting: printed glyphs bent by an elastic warp (never scikit-learn's real digits);
- house numbers: whole two- and three-digit numbers, captioned with the number (the task's class is one centre digit);
- road signs: red-rimmed, yellow and square plates (the task's signs are blue discs);
- satellite images: two kinds of terrain split by a boundary, captioned with both (the task's tiles hold one);
- textures: the pattern fields in arbitrary bright colours (the task's use material colours and uneven light);
- photos: other scikit-image photographs than the task's ten;
- documents: lower-case letters on scanned paper (the task's are capitals);
- counts: flat drawn shapes (the task counts rendered balls).

One caption in five names only the kind, as many web captions do. Every random stream is named ``pretrain/...``, so no
downstream train/val/test image can appear here (a test checks pixel hashes).
"""

from __future__ import annotations

import math
import string

import numpy as np
from PIL import Image

from mergeflow.data.drawing import SHAPE_NAMES, SUPERSAMPLE, contrasting_pair, draw_shape, finish_mask, glyph_mask, new_mask
from mergeflow.data.vision_tasks.acquisition import colorize, smooth_noise, to_uint8
from mergeflow.data.vision_tasks.counting import COUNT_WORDS
from mergeflow.data.vision_tasks.glyphs import house_plate, mnist_style, scanned_page
from mergeflow.data.vision_tasks.land_cover import LAND_COVER, satellite, terrain
from mergeflow.data.vision_tasks.signs import DIRECTIONS, photograph_sign, sign_masks
from mergeflow.data.vision_tasks.textures import TEXTURE_NAMES, bright_texture
from mergeflow.seeding import numpy_rng

# scikit-image photographs that the photo_patches task does not use (it uses ten others)
CORPUS_PHOTOS = (("moon", "the surface of the moon"), ("page", "a page of old text"), ("clock", "a wall clock"),
                 ("retina", "a retina"), ("immunohistochemistry", "cells under a microscope"), ("horse", "a horse"))
KIND_ONLY_SHARE = 0.2


def _warped_glyph(char: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A printed glyph bent by a smooth random displacement field and thickened: a stand-in for handwriting."""
    from scipy.ndimage import map_coordinates  # lazy: SciPy is slow to import

    alpha = glyph_mask(char, size, int(rng.integers(size * 9 // 16, size * 3 // 4 + 1)), float(rng.uniform(-15, 15)),
                       (float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2))))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    strength = rng.uniform(1.0, 2.5)
    coords = [yy + strength * smooth_noise(size, rng, 3.0), xx + strength * smooth_noise(size, rng, 3.0)]
    return np.clip(map_coordinates(alpha, coords, order=1) * rng.uniform(1.0, 1.6), 0.0, 1.0)


def _handwriting(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str, str]:
    char = (string.digits + string.ascii_uppercase)[int(rng.integers(36))]
    what = "digit" if char.isdigit() else "letter"
    return mnist_style(_warped_glyph(char, size, rng), rng), f"handwriting of the {what} {char}.", "handwriting."


def _house_number(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str, str]:
    digits = [str(d) for d in rng.integers(0, 10, int(rng.integers(2, 4)))]
    left, centre, right = (digits[0], digits[1], "") if len(digits) == 2 else (digits[0], digits[1], digits[2])
    number = "".join(digits)
    return house_plate(centre, (left, right), size, rng), f"a photo of the house number {number}.", "a photo of a house number."


def _road_sign(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str, str]:
    direction = int(rng.integers(len(DIRECTIONS)))
    plate = ("circle", "diamond", "square")[int(rng.integers(3))]
    rim, face, arrow, _ = sign_masks(size, plate, direction, rng)
    red, white, black = np.array([0.75, 0.1, 0.1]), np.array([0.92, 0.92, 0.92]), np.array([0.08, 0.08, 0.08])
    colors = {"circle": (red, white, black), "diamond": (black, np.array([0.9, 0.75, 0.1]), black),
              "square": (white, np.array([0.2, 0.5, 0.3]), white)}[plate]
    image = photograph_sign(size, rim, face, arrow, colors, rng)
    return image, f"a road sign showing an arrow pointing {DIRECTIONS[direction]}.", "a photo of a road sign."


def _satellite(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str, str]:
    first, second = rng.choice(len(LAND_COVER), 2, replace=False)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    side = ((xx - size / 2) * math.cos(angle) + (yy - size / 2) * math.sin(angle) > rng.uniform(-6, 6))[..., None]
    tile = np.where(side, terrain(LAND_COVER[first], size, rng), terrain(LAND_COVER[second], size, rng))
    caption = f"a satellite image of {LAND_COVER[first]} and {LAND_COVER[second]}."
    return satellite(tile, rng), caption, "a satellite image."


def _texture(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str, str]:
    name = TEXTURE_NAMES[int(rng.integers(len(TEXTURE_NAMES)))]
    return bright_texture(name, size, rng), f"a photo of a {name} texture.", "a photo of a texture."


def _photo(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str, str]:
    from mergeflow.data.vision_tasks.photos import load_photo  # lazy: scikit-image is slow to import

    name, caption = CORPUS_PHOTOS[int(rng.integers(len(CORPUS_PHOTOS)))]
    photo = load_photo(name)
    h, w, _ = photo.shape
    crop = int(min(rng.integers(40, 160), h, w))
    y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    patch = np.asarray(Image.fromarray(photo[y0 : y0 + crop, x0 : x0 + crop]).resize((size, size), Image.Resampling.BILINEAR))
    return to_uint8(patch.astype(np.float32) / 255.0, rng, noise=0.01), f"a photo of {caption}.", "a photo."


def _document(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str, str]:
    char = string.ascii_lowercase[int(rng.integers(26))]
    return scanned_page(char, size, rng), f"a scan of the printed letter {char}.", "a scan of a document."


def _drawn_count(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str, str]:
    count = int(rng.integers(1, len(COUNT_WORDS) + 1))
    shape = SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))]
    canvas, pen = new_mask(size)
    radius = rng.uniform(0.07, 0.1) * size
    centres: list[tuple[float, float]] = []
    while len(centres) < count:
        c = (rng.uniform(radius + 1, size - radius - 1), rng.uniform(radius + 1, size - radius - 1))
        if all(math.dist(c, o) > 2 * radius + 1 for o in centres):
            centres.append(c)
    for x, y in centres:
        draw_shape(pen, shape, x * SUPERSAMPLE, y * SUPERSAMPLE, radius * SUPERSAMPLE, rng.uniform(0, 2 * math.pi))
    fg, bg = contrasting_pair(rng)
    image = to_uint8(colorize(finish_mask(canvas, size), fg, bg), rng, noise=0.02)
    return image, f"a drawing of {COUNT_WORDS[count - 1]} objects.", "a drawing."


KINDS = (_handwriting, _house_number, _road_sign, _satellite, _texture, _photo, _document, _drawn_count)


def pretraining_corpus(num_samples: int, seed: int, size: int) -> tuple[np.ndarray, list[str]]:
    """``num_samples`` captioned images, the kinds in turn: uint8 images (N, size, size, 3) and their captions."""
    rng = numpy_rng(seed, "pretrain", "corpus")
    images, captions = [], []
    for i in range(num_samples):
        image, caption, kind_only = KINDS[i % len(KINDS)](rng, size)
        images.append(image)
        captions.append(kind_only if rng.random() < KIND_ONLY_SHARE else caption)
    return np.stack(images), captions
