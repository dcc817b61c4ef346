"""Procedural textures: eight periodic or noise patterns in random colours, scale, phase and orientation.

The same fields serve as backgrounds in the pretraining corpus (with other random streams), so the
backbone knows "striped" or "checkered" without ever seeing this task's splits.
"""

from __future__ import annotations

import math

import numpy as np

from mergeflow.data.drawing import compose, contrasting_pair
from mergeflow.data.task_spec import TaskSpec, generated_split

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


def make_textures(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Eight texture classes in random colours."""

    def draw(rng: np.random.Generator, label: int) -> np.ndarray:
        fg, bg = contrasting_pair(rng, min_luma_gap=0.2)
        return compose(texture_field(TEXTURE_NAMES[label], size, rng), fg, bg, noise=0.04, rng=rng)

    return generated_split("textures", split, n, seed, len(TEXTURE_NAMES), draw)


TEXTURES = TaskSpec(
    name="textures",
    class_names=TEXTURE_NAMES,
    templates=("a {} texture.", "a pattern of {}."),
    origin="generated",
    source="procedural NumPy patterns (stripes, checks, dots, rings, zigzag, blotches), random colours/scale/phase/angle",
    make_split=make_textures,
)
