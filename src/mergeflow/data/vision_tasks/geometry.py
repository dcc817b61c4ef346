"""Procedural geometry tasks: which shape, how many dots, which way an arrow on a sign points."""

from __future__ import annotations

import math

import numpy as np

from mergeflow.data.drawing import (
    SHAPE_NAMES,
    SUPERSAMPLE,
    compose,
    contrasting_pair,
    draw_shape,
    finish_mask,
    new_mask,
    random_color,
    rotate_points,
)
from mergeflow.data.task_spec import TaskSpec, generated_split

COUNT_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight")
DIRECTIONS = ("right", "down right", "down", "down left", "left", "up left", "up", "up right")


def make_shapes(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One filled shape of eight kinds, random size, rotation, position and colours."""

    def draw(rng: np.random.Generator, label: int) -> np.ndarray:
        canvas, pen = new_mask(size)
        radius = rng.uniform(0.22, 0.42) * size
        cx = rng.uniform(radius, size - radius) * SUPERSAMPLE
        cy = rng.uniform(radius, size - radius) * SUPERSAMPLE
        draw_shape(pen, SHAPE_NAMES[label], cx, cy, radius * SUPERSAMPLE, rng.uniform(0, 2 * math.pi))
        fg, bg = contrasting_pair(rng)
        return compose(finish_mask(canvas, size), fg, bg, noise=0.03, rng=rng)

    return generated_split("shapes", split, n, seed, len(SHAPE_NAMES), draw)


def make_dot_counts(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One to eight non-overlapping dots of random radius; the class is the count."""

    def draw(rng: np.random.Generator, label: int) -> np.ndarray:
        count = label + 1
        radius = rng.uniform(0.055, 0.085) * size
        centres: list[tuple[float, float]] = []
        while len(centres) < count:
            c = (rng.uniform(radius + 1, size - radius - 1), rng.uniform(radius + 1, size - radius - 1))
            if all(math.dist(c, o) > 2 * radius + 1.5 for o in centres):
                centres.append(c)
        canvas, pen = new_mask(size)
        for x, y in centres:
            draw_shape(pen, "circle", x * SUPERSAMPLE, y * SUPERSAMPLE, radius * SUPERSAMPLE, 0.0)
        fg, bg = contrasting_pair(rng)
        return compose(finish_mask(canvas, size), fg, bg, noise=0.03, rng=rng)

    return generated_split("dot_counts", split, n, seed, len(COUNT_WORDS), draw)


def _arrow(cx: float, cy: float, length: float, angle: float) -> list[tuple[float, float]]:
    """An arrow polygon pointing along ``angle`` (0 = right, clockwise in image coordinates)."""
    shaft, head = length * 0.14, length * 0.34
    pts = [
        (cx - length / 2, cy - shaft), (cx + length / 2 - head, cy - shaft), (cx + length / 2 - head, cy - head),
        (cx + length / 2, cy), (cx + length / 2 - head, cy + head), (cx + length / 2 - head, cy + shaft),
        (cx - length / 2, cy + shaft),
    ]
    return rotate_points(pts, cx, cy, angle)


def make_arrows(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """An arrow on a round or square sign plate (a traffic-sign-like task); the class is one of eight directions."""

    def draw(rng: np.random.Generator, label: int) -> np.ndarray:
        plate_r = rng.uniform(0.36, 0.48) * size
        cx, cy = (rng.uniform(plate_r, size - plate_r) for _ in range(2))
        plate, plate_pen = new_mask(size)
        draw_shape(plate_pen, "circle" if rng.random() < 0.5 else "square", cx * SUPERSAMPLE, cy * SUPERSAMPLE,
                   plate_r * SUPERSAMPLE, math.pi / 4)
        arrow, arrow_pen = new_mask(size)
        angle = label * math.pi / 4 + rng.uniform(-0.15, 0.15)
        arrow_pen.polygon([(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in _arrow(cx, cy, plate_r * 1.5, angle)], fill=255)
        sign_color, arrow_color = contrasting_pair(rng)
        scene_bg = random_color(rng)
        base = compose(finish_mask(plate, size), sign_color, scene_bg, noise=0.0, rng=rng).astype(np.float32) / 255.0
        return compose(finish_mask(arrow, size), arrow_color, base, noise=0.03, rng=rng)

    return generated_split("arrows", split, n, seed, len(DIRECTIONS), draw)


SHAPES = TaskSpec(
    name="shapes",
    class_names=SHAPE_NAMES,
    templates=("a {}.", "a drawing of a {} shape."),
    origin="generated",
    source="filled shapes drawn with Pillow (8 kinds), random size, rotation, position, colours",
    make_split=make_shapes,
)
DOT_COUNTS = TaskSpec(
    name="dot_counts",
    class_names=COUNT_WORDS,
    templates=("{} dots.", "a picture of {} circles."),
    origin="generated",
    source="1-8 non-overlapping dots drawn with Pillow; the class is the count",
    make_split=make_dot_counts,
)
ARROWS = TaskSpec(
    name="arrows",
    class_names=DIRECTIONS,
    templates=("a sign with an arrow pointing {}.", "an arrow pointing {}."),
    origin="generated",
    source="arrows on round/square sign plates drawn with Pillow; the class is one of 8 directions",
    make_split=make_arrows,
)
