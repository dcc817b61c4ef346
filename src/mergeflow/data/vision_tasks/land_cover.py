"""Land cover from above (EuroSAT-like): eight procedural kinds of terrain seen by a satellite.

The acquisition is a satellite's: top-down, uniform light, atmospheric haze, the muted greens, browns and blues of
terrain. The pretraining corpus shows the same renderer over *mixed* scenes (two kinds of terrain split by a boundary,
captioned with both), so zero-shot transfer to single-terrain tiles is partial.
"""

from __future__ import annotations

import math

import numpy as np

from mergeflow.data.task_spec import TaskSpec, generated_split
from mergeflow.data.vision_tasks.acquisition import blur, smooth_noise, to_uint8

LAND_COVER = ("forest", "pasture", "farmland", "river", "highway", "residential area", "industrial area", "lake")
_GREEN_DARK = np.array([0.15, 0.3, 0.15], dtype=np.float32)
_GREEN_LIGHT = np.array([0.45, 0.6, 0.3], dtype=np.float32)
_WATER = np.array([0.12, 0.25, 0.4], dtype=np.float32)
_FIELDS = np.array([[0.55, 0.55, 0.3], [0.4, 0.55, 0.25], [0.6, 0.5, 0.35], [0.5, 0.45, 0.3]], dtype=np.float32)


def _field(base: np.ndarray, size: int, rng: np.random.Generator, sigma: float, amount: float) -> np.ndarray:
    return base * (1.0 + amount * smooth_noise(size, rng, sigma)[..., None])


def terrain(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A float (size, size, 3) top-down tile of one kind of terrain, before the satellite's acquisition."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    u = (xx - size / 2) * math.cos(angle) + (yy - size / 2) * math.sin(angle)
    v = -(xx - size / 2) * math.sin(angle) + (yy - size / 2) * math.cos(angle)
    if kind == "forest":
        return _field(_GREEN_DARK, size, rng, 0.8, 0.35)
    if kind == "pasture":
        return _field(_GREEN_LIGHT, size, rng, 3.0, 0.12)
    if kind == "farmland":
        period = rng.uniform(5.0, 9.0)
        colors = _FIELDS[rng.permutation(len(_FIELDS))]
        stripe = (np.floor(u / period).astype(int) % len(colors))
        return colors[stripe] * (1.0 + 0.06 * smooth_noise(size, rng, 1.0)[..., None])
    if kind in ("river", "highway"):
        ground = _field(_GREEN_LIGHT if rng.random() < 0.5 else _GREEN_DARK, size, rng, 1.5, 0.2)
        if kind == "river":
            path = v - rng.uniform(2.0, 4.0) * np.sin(2 * math.pi * u / rng.uniform(14, 28) + rng.uniform(0, 6.3))
            width, color = rng.uniform(2.0, 3.5), _WATER
        else:
            path, width, color = v - rng.uniform(-4, 4), rng.uniform(1.2, 2.0), np.array([0.55, 0.55, 0.55], dtype=np.float32)
        alpha = np.clip(width - np.abs(path), 0.0, 1.0)[..., None]
        return ground * (1 - alpha) + color * alpha
    if kind in ("residential area", "industrial area"):
        block = rng.uniform(3.0, 5.0) if kind == "residential area" else rng.uniform(7.0, 11.0)
        fill = 0.6 if kind == "residential area" else 0.8
        cell_u, cell_v = np.floor(u / block), np.floor(v / block)
        inside = ((u / block - cell_u) < fill) & ((v / block - cell_v) < fill)
        roof_rng = np.random.default_rng(int(rng.integers(2**31)))
        roofs = (np.array([[0.6, 0.3, 0.25], [0.5, 0.5, 0.5], [0.75, 0.72, 0.7]], dtype=np.float32)
                 if kind == "residential area" else np.array([[0.6, 0.6, 0.62], [0.78, 0.78, 0.8]], dtype=np.float32))
        pick = roof_rng.integers(len(roofs), size=(64, 64))
        roof = roofs[pick[(cell_u.astype(int) % 64), (cell_v.astype(int) % 64)]]
        ground = _GREEN_LIGHT * 0.9 if kind == "residential area" else np.array([0.42, 0.42, 0.4], dtype=np.float32)
        return np.where(inside[..., None], roof, ground)
    if kind == "lake":
        return _WATER * (1.0 + 0.08 * smooth_noise(size, rng, 4.0)[..., None]) * rng.uniform(0.8, 1.2)
    raise ValueError(f"unknown land cover {kind!r}; known: {', '.join(LAND_COVER)}")


def satellite(tile: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A satellite's acquisition: haze towards blue-grey, a slight colour balance shift, soft optics, faint noise."""
    haze = rng.uniform(0.05, 0.3)
    image = tile * (1 - haze) + np.array([0.6, 0.65, 0.7], dtype=np.float32) * haze
    image = image * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    return to_uint8(blur(image, rng.uniform(0.3, 0.6)), rng, noise=0.02)


def make_land_cover(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One kind of terrain per tile."""

    def draw(rng: np.random.Generator, label: int) -> np.ndarray:
        return satellite(terrain(LAND_COVER[label], size, rng), rng)

    return generated_split("land_cover", split, n, seed, len(LAND_COVER), draw)


LAND_COVER_TASK = TaskSpec(
    name="land_cover",
    class_names=LAND_COVER,
    templates=("a satellite image of {}.", "an aerial view of {}."),
    origin="generated",
    source="procedural top-down terrain (forest, fields, rivers, roads, buildings, lakes) with haze and soft optics (EuroSAT-like)",
    make_split=make_land_cover,
)
