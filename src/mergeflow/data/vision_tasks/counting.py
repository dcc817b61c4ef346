"""Object counts (CLEVR-count-like): one to six shaded balls rendered on a grey floor; the class is the count.

The acquisition is a renderer's: a matte grey floor receding in perspective, one light from the upper left, shaded
balls with a highlight and a soft shadow. The pretraining corpus counts *flat* drawn shapes instead, so zero-shot
counting transfers only partly, as CLIP's does to CLEVR.
"""

from __future__ import annotations

import math

import numpy as np

from mergeflow.data.task_spec import TaskSpec, generated_split
from mergeflow.data.vision_tasks.acquisition import blur, gradient, to_uint8

COUNT_WORDS = ("one", "two", "three", "four", "five", "six")
BALL_COLORS = np.array([[0.5, 0.5, 0.5], [0.7, 0.15, 0.15], [0.15, 0.3, 0.75], [0.15, 0.55, 0.2],
                        [0.5, 0.3, 0.15], [0.45, 0.2, 0.55], [0.2, 0.6, 0.65], [0.8, 0.75, 0.2]], dtype=np.float32)


def render_balls(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` non-overlapping shaded balls on a perspective floor (float image in [0, 1])."""
    floor = gradient(size, np.full(3, rng.uniform(0.35, 0.5), dtype=np.float32),
                     np.full(3, rng.uniform(0.55, 0.7), dtype=np.float32))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    balls: list[tuple[float, float, float]] = []
    tries = 0
    while len(balls) < count:
        tries += 1
        y = rng.uniform(0.3, 0.9) * size
        r = (0.06 + 0.05 * y / size) * size * (0.8 if tries > 200 else 1.0)
        x = rng.uniform(r + 1, size - r - 1)
        if all(math.dist((x, y), (bx, by)) > r + br + 0.8 for bx, by, br in balls):
            balls.append((x, y, r))
    image = floor.copy()
    for x, y, r in sorted(balls, key=lambda b: b[1]):  # far balls first
        shadow = np.exp(-(((xx - x - 0.5 * r) / (1.3 * r)) ** 2 + ((yy - y - 0.6 * r) / (0.6 * r)) ** 2))
        image *= (1.0 - 0.35 * shadow)[..., None]
        d2 = ((xx - x) ** 2 + (yy - y) ** 2) / r**2
        inside = np.clip((1.0 - d2) * r, 0.0, 1.0)[..., None]
        shade = 0.55 + 0.6 * np.clip(1.0 - ((xx - x + 0.4 * r) ** 2 + (yy - y + 0.4 * r) ** 2) / (1.6 * r) ** 2, 0, 1)
        color = BALL_COLORS[int(rng.integers(len(BALL_COLORS)))] * shade[..., None]
        image = image * (1 - inside) + color * inside
    return image


def make_object_counts(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One to six rendered balls."""

    def draw(rng: np.random.Generator, label: int) -> np.ndarray:
        return to_uint8(blur(render_balls(label + 1, size, rng), 0.4), rng, noise=0.015)

    return generated_split("object_counts", split, n, seed, len(COUNT_WORDS), draw)


OBJECT_COUNTS = TaskSpec(
    name="object_counts",
    class_names=COUNT_WORDS,
    templates=("a rendering of {} objects.", "a 3D scene with {} balls."),
    origin="generated",
    source="one to six shaded balls with shadows on a perspective grey floor, rendered with NumPy (CLEVR-count-like)",
    make_split=make_object_counts,
)
