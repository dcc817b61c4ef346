"""Small drawing primitives shared by the procedural tasks and the pretraining corpus.

Everything draws an alpha ("ink") mask in [0, 1]; each task's acquisition (vision_tasks/acquisition.py) then
colours it and adds its own blur and noise.
"""

from __future__ import annotations

import colorsys
import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SUPERSAMPLE = 4

NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 215, 40),
    "orange": (240, 140, 30),
    "purple": (140, 50, 190),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    "pink": (240, 130, 180),
    "cyan": (40, 200, 220),
    "brown": (130, 80, 40),
}


@functools.lru_cache(maxsize=64)
def builtin_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in scalable font (ships inside Pillow >= 10.1, so it exists on every machine)."""
    return ImageFont.load_default(size=size)


def random_color(rng: np.random.Generator, value: tuple[float, float] = (0.2, 1.0)) -> np.ndarray:
    """A random RGB colour in [0, 1] drawn in HSV space."""
    h, s, v = rng.random(), rng.uniform(0.0, 1.0), rng.uniform(*value)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def contrasting_pair(rng: np.random.Generator, min_luma_gap: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """A (foreground, background) colour pair, the foreground always the lighter by ``min_luma_gap``.

    Fixing the polarity (light ink on a darker ground, as in MNIST) is deliberate: with random polarity a
    tiny ViT trained for minutes on a CPU spends most of its budget learning polarity invariance.
    """
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    while True:
        fg, bg = random_color(rng, (0.0, 1.0)), random_color(rng, (0.0, 1.0))
        if float(fg @ weights) - float(bg @ weights) >= min_luma_gap:
            return fg, bg


def new_mask(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A supersampled greyscale canvas to draw a mask on (downsampled later for anti-aliasing)."""
    canvas = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    return canvas, ImageDraw.Draw(canvas)


def finish_mask(canvas: Image.Image, size: int) -> np.ndarray:
    """Downsample a supersampled canvas to (size, size) float alpha in [0, 1]."""
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0


def regular_polygon(cx: float, cy: float, radius: float, sides: int, angle: float) -> list[tuple[float, float]]:
    """Vertices of a regular polygon."""
    return [
        (cx + radius * math.cos(angle + 2 * math.pi * k / sides), cy + radius * math.sin(angle + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def star_polygon(cx: float, cy: float, radius: float, points: int, angle: float, inner: float = 0.45) -> list[tuple[float, float]]:
    """Vertices of a star with ``points`` tips."""
    verts = []
    for k in range(2 * points):
        r = radius if k % 2 == 0 else radius * inner
        a = angle + math.pi * k / points
        verts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return verts


def rotate_points(points: list[tuple[float, float]], cx: float, cy: float, angle: float) -> list[tuple[float, float]]:
    """Rotate points about (cx, cy) by ``angle`` radians."""
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + c * (x - cx) - s * (y - cy), cy + s * (x - cx) + c * (y - cy)) for x, y in points]


SHAPE_NAMES = ("circle", "triangle", "square", "pentagon", "hexagon", "star", "cross", "crescent")


def draw_shape(draw: ImageDraw.ImageDraw, name: str, cx: float, cy: float, radius: float, angle: float) -> None:
    """Draw one named filled shape (coordinates already in supersampled pixels)."""
    if name == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
    elif name in ("triangle", "square", "pentagon", "hexagon"):
        sides = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}[name]
        draw.polygon(regular_polygon(cx, cy, radius, sides, angle), fill=255)
    elif name == "star":
        draw.polygon(star_polygon(cx, cy, radius, 5, angle), fill=255)
    elif name == "cross":
        w = radius * 0.38
        bars = [
            [(cx - radius, cy - w), (cx + radius, cy - w), (cx + radius, cy + w), (cx - radius, cy + w)],
            [(cx - w, cy - radius), (cx + w, cy - radius), (cx + w, cy + radius), (cx - w, cy + radius)],
        ]
        for bar in bars:
            draw.polygon(rotate_points(bar, cx, cy, angle), fill=255)
    elif name == "crescent":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
        ox, oy = cx + 0.55 * radius * math.cos(angle), cy + 0.55 * radius * math.sin(angle)
        r2 = radius * 0.85
        draw.ellipse([ox - r2, oy - r2, ox + r2, oy + r2], fill=0)
    else:
        raise ValueError(f"unknown shape {name!r}; known: {', '.join(SHAPE_NAMES)}")


def glyph_mask(char: str, size: int, font_px: int, angle_deg: float, offset: tuple[float, float]) -> np.ndarray:
    """Alpha mask of one character of Pillow's built-in font, rotated and shifted inside a (size, size) tile."""
    big = size * SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    font = builtin_font(font_px * SUPERSAMPLE)
    draw.text((big / 2 + offset[0] * SUPERSAMPLE, big / 2 + offset[1] * SUPERSAMPLE), char, font=font, fill=255, anchor="mm")
    canvas = canvas.rotate(angle_deg, resample=Image.Resampling.BILINEAR)
    return finish_mask(canvas, size)


def place_small_mask(small: np.ndarray, size: int, scale_px: int, offset: tuple[int, int]) -> np.ndarray:
    """Resize a small alpha map (e.g. an 8x8 handwritten digit) to ``scale_px`` and paste it into a (size, size) tile."""
    img = Image.fromarray((np.clip(small, 0, 1) * 255).astype(np.uint8)).resize((scale_px, scale_px), Image.Resampling.BILINEAR)
    out = np.zeros((size, size), dtype=np.float32)
    x0 = (size - scale_px) // 2 + offset[0]
    y0 = (size - scale_px) // 2 + offset[1]
    out[y0 : y0 + scale_px, x0 : x0 + scale_px] = np.asarray(img, dtype=np.float32) / 255.0
    return out
