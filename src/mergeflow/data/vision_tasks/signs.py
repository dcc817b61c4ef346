"""Road signs (GTSRB-like): low-resolution outdoor crops of a blue mandatory sign whose white arrow gives the class.

The acquisition is GTSRB's: the sign fills most of the crop, sky or foliage behind it, uneven sunlight, motion and
focus blur, strong sensor noise. The pretraining corpus draws other sign plates (red rims, yellow diamonds) with its
own random streams, so zero-shot transfer to these signs is partial, as CLIP's is to GTSRB.
"""

from __future__ import annotations

import math

import numpy as np

from mergeflow.data.drawing import SUPERSAMPLE, draw_shape, finish_mask, new_mask, rotate_points
from mergeflow.data.task_spec import TaskSpec, generated_split
from mergeflow.data.vision_tasks.acquisition import blur, colorize, gradient, illumination, to_uint8

DIRECTIONS = ("right", "down right", "down", "down left", "left", "up left", "up", "up right")
OUTDOOR = (
    (np.array([0.55, 0.7, 0.9]), np.array([0.35, 0.5, 0.3])),   # sky over foliage
    (np.array([0.7, 0.75, 0.8]), np.array([0.45, 0.45, 0.45])),  # overcast over road
    (np.array([0.3, 0.45, 0.25]), np.array([0.2, 0.3, 0.15])),  # trees
    (np.array([0.8, 0.65, 0.5]), np.array([0.5, 0.4, 0.35])),   # dusk over buildings
)


def arrow_polygon(cx: float, cy: float, length: float, angle: float) -> list[tuple[float, float]]:
    """An arrow polygon pointing along ``angle`` (0 = right, clockwise in image coordinates)."""
    shaft, head = length * 0.14, length * 0.34
    pts = [
        (cx - length / 2, cy - shaft), (cx + length / 2 - head, cy - shaft), (cx + length / 2 - head, cy - head),
        (cx + length / 2, cy), (cx + length / 2 - head, cy + head), (cx + length / 2 - head, cy + shaft),
        (cx - length / 2, cy + shaft),
    ]
    return rotate_points(pts, cx, cy, angle)


def sign_masks(size: int, plate: str, direction: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(rim, plate face, arrow) alpha masks of one sign; the plate is "circle", "square" or "diamond"."""
    radius = rng.uniform(0.36, 0.46) * size
    cx, cy = (rng.uniform(size / 2 - 2.5, size / 2 + 2.5) for _ in range(2))
    rim, rim_pen = new_mask(size)
    face, face_pen = new_mask(size)
    shape, angle = {"circle": ("circle", 0.0), "square": ("square", math.pi / 4), "diamond": ("square", 0.0)}[plate]
    draw_shape(rim_pen, shape, cx * SUPERSAMPLE, cy * SUPERSAMPLE, radius * SUPERSAMPLE, angle)
    draw_shape(face_pen, shape, cx * SUPERSAMPLE, cy * SUPERSAMPLE, radius * 0.85 * SUPERSAMPLE, angle)
    arrow, arrow_pen = new_mask(size)
    heading = direction * math.pi / 4 + rng.uniform(-0.12, 0.12)
    arrow_pen.polygon([(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in arrow_polygon(cx, cy, radius * 1.2, heading)], fill=255)
    return finish_mask(rim, size), finish_mask(face, size), finish_mask(arrow, size), (cx, cy, radius)


def photograph_sign(size: int, rim: np.ndarray, face: np.ndarray, arrow: np.ndarray,
                    colors: tuple[np.ndarray, np.ndarray, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """GTSRB's acquisition of a sign: outdoor backdrop, uneven sunlight, blur, heavy noise."""
    top, bottom = OUTDOOR[int(rng.integers(len(OUTDOOR)))]
    scene = gradient(size, top * rng.uniform(0.7, 1.1), bottom * rng.uniform(0.7, 1.1), rng.uniform(-0.3, 0.3))
    rim_color, face_color, arrow_color = colors
    image = colorize(rim, rim_color, scene)
    image = colorize(face, face_color, image)
    image = colorize(arrow, arrow_color, image)
    image = image * illumination(size, rng, rng.uniform(0.1, 0.4)) * rng.uniform(0.5, 1.1)
    return to_uint8(blur(image, rng.uniform(0.6, 1.2)), rng, noise=0.06)


def make_road_signs(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A blue round mandatory sign with a white arrow in one of eight directions."""
    blue, white = np.array([0.1, 0.25, 0.7], dtype=np.float32), np.array([0.92, 0.92, 0.92], dtype=np.float32)

    def draw(rng: np.random.Generator, label: int) -> np.ndarray:
        rim, face, arrow, _ = sign_masks(size, "circle", label, rng)
        tint = rng.uniform(0.85, 1.15, 3).astype(np.float32)
        return photograph_sign(size, rim, face, arrow, (white * tint, blue * tint, white * tint), rng)

    return generated_split("road_signs", split, n, seed, len(DIRECTIONS), draw)


ROAD_SIGNS = TaskSpec(
    name="road_signs",
    class_names=tuple(f"an arrow pointing {d}" for d in DIRECTIONS),
    templates=("a road sign showing {}.", "a photo of a traffic sign with {}."),
    origin="generated",
    source="blue round signs with white arrows drawn with Pillow, outdoor backdrops, uneven light, blur, noise (GTSRB-like)",
    make_split=make_road_signs,
)
