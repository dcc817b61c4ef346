"""A tiny template grammar: ``{slot}`` picks one alternative (which may hold slots itself), ``{slot^}`` capitalises it.

Every choice is drawn from the caller's seeded generator, left to right, so a sentence is a pure function of the
generator state: the same seed writes the same split.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from mergeflow.errors import MergeflowError

Grammar = Mapping[str, Sequence[str]]
T = TypeVar("T")

_SLOT = re.compile(r"\{(\w+)(\^?)\}")
_MAX_DEPTH = 8


def pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    """One alternative, uniformly."""
    return options[int(rng.integers(len(options)))]


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def expand(rng: np.random.Generator, template: str, grammar: Grammar, depth: int = 0) -> str:
    """Fill every slot of ``template`` from ``grammar`` recursively; an unknown slot is a bug in a task's grammar."""
    if depth > _MAX_DEPTH:
        raise MergeflowError(f"template grammar recurses deeper than {_MAX_DEPTH} levels at {template!r}")

    def fill(match: re.Match[str]) -> str:
        name, cap = match.group(1), match.group(2)
        if name not in grammar:
            raise MergeflowError(f"template {template!r} uses an undefined slot {{{name}}}")
        value = expand(rng, pick(rng, grammar[name]), grammar, depth + 1)
        return capitalise(value) if cap else value

    return _SLOT.sub(fill, template)


def tidy(text: str) -> str:
    """Collapse double spaces and spaces before punctuation that optional empty slots leave behind."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([,.!?;:])", r"\1", text)


def at_most_words(write: Callable[[], str], max_words: int) -> str:
    """Call ``write`` (which draws from the caller's stream) until its sentence has at most ``max_words`` words.

    Long combinations of slots are rare; redrawing them keeps every sentence within the suite's 32-token budget.
    """
    for _ in range(1000):
        text = write()
        if len(text.split()) <= max_words:
            return text
    raise MergeflowError(f"the templates produced no sentence of at most {max_words} words in 1000 draws")
