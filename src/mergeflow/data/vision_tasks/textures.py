"""Textures (DTD-like): eight periodic or noise patterns photographed as close-ups of real surfaces.

The acquisition is DTD's: material colours (wood, stone, fabric, paint), a light that falls off across the frame,
slight defocus. The pretraining corpus shows the same pattern fields in arbitrary bright colours with its own random
streams, so the backbone knows "striped" or "checkered" without ever seeing this task's splits.
"""

from __future__ import annotations

import math

import numpy as np

from mergeflow.data.drawing import contrasting_pair
from mergeflow.data.task_spec import TaskSpec, generated_split
from mergeflow.data.vision_tasks.acquisition import blur, colorize, illumination, to_uint8

MATERIALS = np.array([[0.55, 0.4, 0.25], [0.75, 0.65, 0.5], [0.35, 0.3, 0.28], [0.6, 0.2, 0.15], [0.2, 0.25, 0.4],
                      [0.85, 0.82, 0.75], [0.3, 0.4, 0.25], [0.65, 0.55, 0.2]], dtype=np.float32)
TEXTURE_NAMES = (
    "horizontal stripes", "vertical stripes", "diagonal stripes", "checkerboard",
    "polka dots", "concentric rings", "zigzag", "blotches",
)


def _soft(x: np.ndarray, sharpness: float = 6.0) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-sharpness * x))


def texture_field(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """An alpha field (size, size) in [0, 1] for one named texture."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = rng.uniform(0, size, 2)
    jitter = math.radians(rng.uniform(-12, 12))
    period = rng.uniform(4.0, 10.0)
    phase = rng.uniform(0, 2 * math.pi)

    def along(angle: float) -> np.ndarray:
        return (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)

    if name == "horizontal stripes":
        return _soft(np.sin(2 * math.pi * along(math.pi / 2 + jitter) / period + phase))
    if name == "vertical stripes":
        return _soft(np.sin(2 * math.pi * along(jitter) / period + phase))
    if name == "diagonal stripes":
        return _soft(np.sin(2 * math.pi * along(rng.choice([1, -1]) * math.pi / 4 + jitter) / period + phase))
    if name == "checkerboard":
        u, v = along(jitter), along(math.pi / 2 + jitter)
        return _soft(np.sin(2 * math.pi * u / period + phase) * np.sin(2 * math.pi * v / period + phase), 8.0)
    if name == "polka dots":
        u, v = along(jitter) % period, along(math.pi / 2 + jitter) % period
        dist = np.hypot(u - period / 2, v - period / 2)
        return _soft(period * rng.uniform(0.22, 0.32) - dist, 3.0)
    if name == "concentric rings":
        return _soft(np.sin(2 * math.pi * np.hypot(xx - cx, yy - cy) / period + phase))
    if name == "zigzag":
        u, v = along(jitter), along(math.pi / 2 + jitter)
        tri = np.abs(((u / period) % 1.0) - 0.5) * period * rng.uniform(0.8, 1.6)
        return _soft(np.sin(2 * math.pi * (v + tri) / period + phase))
    if name == "blotches":
        from scipy.ndimage import gaussian_filter  # lazy: SciPy is slow to import

        noise = gaussian_filter(rng.normal(size=(size, size)), sigma=rng.uniform(1.5, 3.0))
        return _soft(noise / (noise.std() + 1e-6), 3.0)
    raise ValueError(f"unknown texture {name!r}; known: {', '.join(TEXTURE_NAMES)}")


def bright_texture(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A pattern in two arbitrary contrasting colours (the pretraining corpus's rendering of a texture)."""
    fg, bg = contrasting_pair(rng, min_luma_gap=0.2)
    return to_uint8(colorize(texture_field(name, size, rng), fg, bg), rng, noise=0.04)


def surface_closeup(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """DTD's acquisition: a pattern in two material colours, light falling off across the frame, slight defocus."""
    pick = rng.choice(len(MATERIALS), 2, replace=False)
    a, b = MATERIALS[pick[0]] * rng.uniform(0.8, 1.2), MATERIALS[pick[1]] * rng.uniform(0.8, 1.2)
    image = colorize(texture_field(name, size, rng), a, b) * illumination(size, rng, rng.uniform(0.15, 0.35))
    return to_uint8(blur(image, rng.uniform(0.3, 0.7)), rng, noise=0.03)


def make_textures(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Eight texture classes as close-ups of material surfaces."""

    def draw(rng: np.random.Generator, label: int) -> np.ndarray:
        return surface_closeup(TEXTURE_NAMES[label], size, rng)

    return generated_split("textures", split, n, seed, len(TEXTURE_NAMES), draw)


TEXTURES = TaskSpec(
    name="textures",
    class_names=TEXTURE_NAMES,
    templates=("a photo of a {} texture.", "a close-up of a surface with {}."),
    origin="generated",
    source="procedural NumPy patterns (stripes, checks, dots, rings, zigzag, blotches) in material colours, uneven light, defocus (DTD-like)",
    make_split=make_textures,
)
