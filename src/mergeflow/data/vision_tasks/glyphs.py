"""Digit and letter tasks: real handwriting (scikit-learn digits) and glyphs of Pillow's built-in font.

The two digit tasks share classes and prompts but not input distributions, which makes them the
suite's main confusable pair for task routing.
"""

from __future__ import annotations

import functools

import numpy as np

from mergeflow.data.drawing import compose, contrasting_pair, glyph_mask, place_small_mask
from mergeflow.data.task_spec import TaskSpec, balanced_labels, generated_split
from mergeflow.seeding import numpy_rng

DIGIT_WORDS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H", "J", "K")
SOURCE_FRACTIONS = {"train": (0.0, 0.6), "val": (0.6, 0.75), "test": (0.75, 1.0)}


@functools.cache
def load_digits():  # type: ignore[no-untyped-def]
    """scikit-learn's bundled digits (imported lazily: scikit-learn is slow to import and params checks need none of it)."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    return sklearn_load_digits()


def _handwritten_pool(split: str, seed: int) -> np.ndarray:
    """Indices of scikit-learn's 1,797 digits reserved for one split (a fixed seeded partition: no digit in two splits)."""
    n = len(load_digits().target)
    order = numpy_rng(seed, "handwritten_digits", "partition").permutation(n)
    lo, hi = SOURCE_FRACTIONS[split]
    return order[int(lo * n) : int(hi * n)]


def make_handwritten_digits(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Real handwritten digits (8x8, 16 grey levels) rescaled, placed and coloured at random."""
    digits = load_digits()
    pool = _handwritten_pool(split, seed)
    rng = numpy_rng(seed, "handwritten_digits", split)
    by_class = {c: rng.permutation(pool[digits.target[pool] == c]) for c in range(10)}
    labels = balanced_labels(rng, n, 10)
    seen = dict.fromkeys(range(10), 0)
    images, ids = [], []
    for label in labels:
        cands = by_class[int(label)]
        src = int(cands[seen[int(label)] % len(cands)])
        seen[int(label)] += 1
        scale = int(rng.integers(size * 9 // 16, size * 7 // 8 + 1))
        slack = (size - scale) // 2
        offset = (int(rng.integers(-slack, slack + 1)), int(rng.integers(-slack, slack + 1)))
        alpha = place_small_mask(digits.images[src] / 16.0, size, scale, offset)
        fg, bg = contrasting_pair(rng)
        images.append(compose(alpha, fg, bg, noise=0.03, rng=rng))
        ids.append(f"sklearn_digits:{src}:{split}:{len(ids)}")
    return np.stack(images), labels, ids


def _rendered(task: str, chars: tuple[str, ...], split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    def draw(rng: np.random.Generator, label: int) -> np.ndarray:
        font_px = int(rng.integers(size * 9 // 16, size * 15 // 16 + 1))
        slack = max(1, (size - font_px) // 2)
        offset = (float(rng.uniform(-slack, slack)), float(rng.uniform(-slack, slack)))
        alpha = glyph_mask(chars[label], size, font_px, float(rng.uniform(-20, 20)), offset)
        fg, bg = contrasting_pair(rng)
        return compose(alpha, fg, bg, noise=0.03, rng=rng)

    return generated_split(task, split, n, seed, len(chars), draw)


def make_rendered_digits(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Digits 0-9 in Pillow's built-in font, random size, rotation, position and colours."""
    return _rendered("rendered_digits", DIGIT_WORDS, split, n, seed, size)


def make_rendered_letters(split: str, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Ten capital letters in the same renderer as the digits (confusable with them by style)."""
    return _rendered("rendered_letters", LETTERS, split, n, seed, size)


HANDWRITTEN_DIGITS = TaskSpec(
    name="handwritten_digits",
    class_names=DIGIT_WORDS,
    templates=("a handwritten digit {}.", "the number {} written by hand."),
    origin="real",
    source="scikit-learn `load_digits` (1,797 real 8x8 handwritten digits, UCI); rescaled, placed and coloured at random",
    make_split=make_handwritten_digits,
)
RENDERED_DIGITS = TaskSpec(
    name="rendered_digits",
    class_names=DIGIT_WORDS,
    templates=("the digit {}.", "a printed number {}."),
    origin="generated",
    source="digits drawn with Pillow's built-in font; random size, rotation, position, colours",
    make_split=make_rendered_digits,
)
RENDERED_LETTERS = TaskSpec(
    name="rendered_letters",
    class_names=LETTERS,
    templates=("the letter {}.", "a printed capital {}."),
    origin="generated",
    source="capital letters drawn with Pillow's built-in font, same renderer as `rendered_digits`",
    make_split=make_rendered_letters,
)
