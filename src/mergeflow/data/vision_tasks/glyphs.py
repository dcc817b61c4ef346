"""Digit and letter tasks, each with its own acquisition (as MNIST, SVHN and EMNIST differ).

- ``handwritten_digits`` (MNIST-like): real handwriting (scikit-learn's digits), white strokes on black, centred, grey.
- ``house_numbers`` (SVHN-like): printed digits on coloured house plates photographed outdoors, neighbouring digits
  cut by the frame, colour casts, blur and noise.
- ``document_letters`` (scanned-page-like): dark ink letters on cream paper with fibres and a ruled line.

The two digit tasks share classes and prompts but not input distributions: the suite's main confusable pair for
task routing, as MNIST and SVHN are in the papers' eight tasks.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from mergeflow.data.drawing import glyph_mask, place_small_mask, random_color
from mergeflow.data.task_spec import TaskSpec, balanced_labels, generated_split
from mergeflow.data.vision_tasks.acquisition import blur, colorize, gradient, illumination, smooth_noise, to_uint8
from mergeflow.seeding import numpy_rng

DIGIT_WORDS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H", "J", "K")
SOURCE_FRACTIONS = {"train": (0.0, 0.6), "val": (0.6, 0.75), "test": (0.75, 1.0)}


@functools.cache
def load_digits() -> Any:  # scikit-learn's Bunch has no type stubs
    """scikit-learn's bundled digits (imported lazily: scikit-learn is slow to import and params checks need none of it)."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    return sklearn_load_digits()


def _handwritten_pool(split: str, seed: int) -> np.ndarray:
    """Indices of scikit-learn's 1,797 digits reserved for one split (a fixed seeded partition: no digit in two splits)."""
    n = len(load_digits().target)
    order = numpy_rng(seed, "handwritten_digits", "partition").permutation(n)
    lo, hi = SOURCE_FRACTIONS[split]
    return order[int(lo * n) : int(hi * n)]


def mnist_style(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MNIST's acquisition: grey strokes of varying brightness on black, slightly soft, almost noiseless."""
    ink = rng.uniform(0.75, 1.0)
    return to_uint8(blur(alpha, rng.uniform(0.3, 0.7)) * ink, rng, noise=0.015)


def make_handwritten_digits(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Real handwritten digits (8x8, 16 grey levels) rescaled to about 20 of 32 pixels and centred, as MNIST does."""
    digits = load_digits()
    pool = _handwritten_pool(split, seed)
    rng = numpy_rng(seed, "handwritten_digits", split)
    by_class = {c: rng.permutation(pool[digits.target[pool] == c]) for c in range(10)}
    labels = balanced_labels(rng, n, 10)
    seen = dict.fromkeys(range(10), 0)
    images: list[np.ndarray] = []
    ids: list[str] = []
    for label in labels:
        cands = by_class[int(label)]
        src = int(cands[seen[int(label)] % len(cands)])
        seen[int(label)] += 1
        scale = int(rng.integers(size * 9 // 16, size * 3 // 4 + 1))
        offset = (int(rng.integers(-2, 3)), int(rng.integers(-2, 3)))
        alpha = place_small_mask(digits.images[src] / 16.0, size, scale, offset)
        images.append(mnist_style(alpha, rng))
        ids.append(f"sklearn_digits:{src}:{split}:{len(ids)}")
    return np.stack(images), labels, ids


def house_plate(center: str, neighbours: tuple[str, str], size: int, rng: np.random.Generator) -> np.ndarray:
    """SVHN's acquisition: a digit on a coloured plate, parts of its neighbours at the edges, outdoor light, blur."""
    font_px = int(rng.integers(size * 5 // 8, size * 7 // 8 + 1))
    angle = float(rng.uniform(-8, 8))
    dy = float(rng.uniform(-2, 2))
    step = font_px * rng.uniform(0.55, 0.7)
    alpha = glyph_mask(center, size, font_px, angle, (float(rng.uniform(-1.5, 1.5)), dy))
    for side, char in zip((-1, 1), neighbours, strict=True):
        if char:
            alpha = np.maximum(alpha, glyph_mask(char, size, font_px, angle, (side * step, dy)))
    plate = random_color(rng, (0.35, 1.0))
    ink = random_color(rng, (0.0, 1.0))
    while abs(float(ink.mean()) - float(plate.mean())) < 0.3:
        ink = random_color(rng, (0.0, 1.0))
    ground = gradient(size, plate, plate * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi))
    image = colorize(alpha, ink, ground) * illumination(size, rng, rng.uniform(0.05, 0.3))
    return to_uint8(blur(image, rng.uniform(0.5, 1.1)), rng, noise=0.05)


def _neighbours(rng: np.random.Generator, chars: tuple[str, ...]) -> tuple[str, str]:
    """Which neighbouring characters a house plate shows (none, one side, or both)."""
    pick = [str(chars[int(rng.integers(len(chars)))]) if rng.random() < 0.6 else "" for _ in range(2)]
    return pick[0], pick[1]


def make_house_numbers(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The centre digit of a house-number plate (printed font), neighbours cut by the frame."""

    def draw(rng: np.random.Generator, label: int) -> np.ndarray:
        return house_plate(DIGIT_WORDS[label], _neighbours(rng, DIGIT_WORDS), size, rng)

    return generated_split("house_numbers", split, n, seed, len(DIGIT_WORDS), draw)


def scanned_page(char: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A scanned page's acquisition: dark ink on cream paper with fibres, a faint ruled line, almost grey."""
    font_px = int(rng.integers(size * 9 // 16, size * 13 // 16 + 1))
    alpha = glyph_mask(char, size, font_px, float(rng.uniform(-6, 6)),
                       (float(rng.uniform(-3, 3)), float(rng.uniform(-3, 3))))
    paper = np.array([0.93, 0.9, 0.82], dtype=np.float32) * rng.uniform(0.85, 1.0)
    fibres = 0.035 * smooth_noise(size, rng, 0.7)[..., None]
    ground = np.broadcast_to(paper, (size, size, 3)) + fibres
    row = int(rng.integers(size * 3 // 4, size - 2))
    ground = ground.copy()
    ground[row] = ground[row] * np.array([0.75, 0.8, 0.95], dtype=np.float32)
    ink = np.array([0.1, 0.1, 0.2], dtype=np.float32) * rng.uniform(0.5, 1.5)
    return to_uint8(blur(colorize(alpha, ink, ground), rng.uniform(0.2, 0.5)), rng, noise=0.02)


def make_document_letters(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Ten capital letters printed on scanned paper."""

    def draw(rng: np.random.Generator, label: int) -> np.ndarray:
        return scanned_page(LETTERS[label], size, rng)

    return generated_split("document_letters", split, n, seed, len(LETTERS), draw)


HANDWRITTEN_DIGITS = TaskSpec(
    name="handwritten_digits",
    class_names=DIGIT_WORDS,
    templates=("handwriting of the digit {}.", "a handwritten number {}."),
    origin="real",
    source="scikit-learn `load_digits` (1,797 real 8x8 handwritten digits, UCI); grey strokes on black, centred (MNIST-like)",
    make_split=make_handwritten_digits,
)
HOUSE_NUMBERS = TaskSpec(
    name="house_numbers",
    class_names=DIGIT_WORDS,
    templates=("a photo of the house number {}.", "a street photo of the number {}."),
    origin="generated",
    source="printed digits (Pillow's font) on coloured house plates with cut-off neighbours, outdoor light, blur, noise (SVHN-like)",
    make_split=make_house_numbers,
)
DOCUMENT_LETTERS = TaskSpec(
    name="document_letters",
    class_names=LETTERS,
    templates=("a scan of the printed letter {}.", "a document showing the letter {}."),
    origin="generated",
    source="capital letters (Pillow's font) in dark ink on cream paper with fibres and a ruled line (scanned-page-like)",
    make_split=make_document_letters,
)
