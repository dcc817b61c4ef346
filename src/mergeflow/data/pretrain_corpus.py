"""A captioned image corpus for pretraining the built-in backbone contrastively, disjoint from every task split.

Scenes are 1-3 coloured objects (a glyph of Pillow's built-in font or a filled shape) on a plain or
textured background, with a caption that names count, object and background, e.g. "two stars on a
striped background". Colours are deliberately left out of the captions: when they were named, the
contrastive loss was solved by colour alone and the image tower learned no shape or glyph identity. Nothing here comes from scikit-learn's digits or the
scikit-image photos, arrows are never drawn, and the random streams are named ``pretrain/...``, so no
downstream train/val/test image appears in it. The backbone thus learns general visual concepts
(glyph identity, shape, count, colour, texture) the way CLIP learns from web captions, and then has to
be fine-tuned to solve the downstream tasks.
"""

from __future__ import annotations

import math
import string

import numpy as np

from mergeflow.data.drawing import (
    NAMED_COLORS,
    SHAPE_NAMES,
    SUPERSAMPLE,
    compose,
    draw_shape,
    finish_mask,
    glyph_mask,
    new_mask,
)
from mergeflow.data.vision_tasks.textures import TEXTURE_NAMES, texture_field
from mergeflow.seeding import numpy_rng

GLYPHS = tuple(string.digits + string.ascii_uppercase)
NUMBER_WORDS = ("one", "two", "three")
BACKGROUND_WORDS = {
    "horizontal stripes": "striped", "vertical stripes": "striped", "diagonal stripes": "striped",
    "checkerboard": "checkered", "polka dots": "dotted", "concentric rings": "ringed", "zigzag": "zigzag",
    "blotches": "blotchy",
}


def _background(rng: np.random.Generator, size: int, fg_name: str) -> tuple[np.ndarray, str]:
    """A plain or textured background in colours other than the object's; returns (image in [0,1], phrase)."""
    others = [c for c in NAMED_COLORS if c != fg_name]
    c1 = np.array(NAMED_COLORS[others[rng.integers(len(others))]], dtype=np.float32) / 255.0
    if rng.random() < 0.5:
        return np.broadcast_to(c1, (size, size, 3)).copy(), "a plain background"
    c2 = np.array(NAMED_COLORS[others[rng.integers(len(others))]], dtype=np.float32) / 255.0
    texture = TEXTURE_NAMES[rng.integers(len(TEXTURE_NAMES))]
    alpha = texture_field(texture, size, rng)[..., None] * 0.5
    return c1 * (1 - alpha) + c2 * alpha, f"a {BACKGROUND_WORDS[texture]} background"


def _scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    color_name = list(NAMED_COLORS)[rng.integers(len(NAMED_COLORS))]
    fg = np.array(NAMED_COLORS[color_name], dtype=np.float32) / 255.0
    background, bg_phrase = _background(rng, size, color_name)
    if rng.random() < 0.5:
        char = GLYPHS[rng.integers(len(GLYPHS))]
        font_px = int(rng.integers(size * 9 // 16, size * 15 // 16 + 1))
        slack = max(1, (size - font_px) // 2)
        alpha = glyph_mask(char, size, font_px, float(rng.uniform(-20, 20)),
                           (float(rng.uniform(-slack, slack)), float(rng.uniform(-slack, slack))))
        kind = "digit" if char.isdigit() else "letter"
        caption = f"the {kind} {char} on {bg_phrase}"
    else:
        shape = SHAPE_NAMES[rng.integers(len(SHAPE_NAMES))]
        count = int(rng.integers(1, 4))
        canvas, draw = new_mask(size)
        radius = rng.uniform(0.13, 0.2) * size if count > 1 else rng.uniform(0.2, 0.4) * size
        for _ in range(count):
            cx, cy = (rng.uniform(radius, size - radius) for _ in range(2))
            draw_shape(draw, shape, cx * SUPERSAMPLE, cy * SUPERSAMPLE, radius * SUPERSAMPLE, rng.uniform(0, 2 * math.pi))
        alpha = finish_mask(canvas, size)
        noun = shape if count == 1 else ("crosses" if shape == "cross" else f"{shape}s")
        caption = f"{NUMBER_WORDS[count - 1]} {noun} on {bg_phrase}"
    return compose(alpha, fg, background, noise=0.03, rng=rng), caption


def pretraining_corpus(num_samples: int, seed: int, size: int) -> tuple[np.ndarray, list[str]]:
    """``num_samples`` captioned scenes: uint8 images (N, size, size, 3) and their captions."""
    rng = numpy_rng(seed, "pretrain", "corpus")
    images, captions = [], []
    for _ in range(num_samples):
        image, caption = _scene(rng, size)
        images.append(image)
        captions.append(caption)
    return np.stack(images), captions
