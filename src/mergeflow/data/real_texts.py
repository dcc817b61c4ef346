"""A real text task's rows as sentences (or sentence pairs) and labels, read from its lazy source split.

prepare@TASK tokenises them with the backbone's tokenizer once; every later stage reads the token-id tensor it
writes, exactly as for the offline text suites, so nothing downstream knows the text came from a public dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from mergeflow.data.sources.examples import SourceSplit
from mergeflow.errors import MergeflowError


@dataclass(frozen=True)
class TextRows:
    """``firsts[i]`` (and ``seconds[i]`` for a pair task) is row i's text; ``labels[i]`` its class."""

    firsts: list[str]
    seconds: list[str] | None
    labels: list[int]


def read_text_rows(split: SourceSplit, description: str) -> TextRows:
    """Every row of ``split``: one text column, or two (a pair, encoded as the tokenizer encodes pairs)."""
    firsts: list[str] = []
    seconds: list[str] = []
    labels: list[int] = []
    width: int | None = None
    for example in tqdm(split, desc=description, unit="row", leave=False, mininterval=2.0):
        texts = example.input
        if not isinstance(texts, tuple) or not 1 <= len(texts) <= 2:
            raise MergeflowError(f"{split.name}: row {example.index} is not one sentence or a pair of sentences")
        if width is not None and len(texts) != width:
            raise MergeflowError(f"{split.name}: row {example.index} has {len(texts)} text columns, earlier rows {width}")
        width = len(texts)
        firsts.append(texts[0])
        if len(texts) == 2:
            seconds.append(texts[1])
        labels.append(example.label)
    if not labels:
        raise MergeflowError(f"{split.name}: no rows to prepare")
    return TextRows(firsts, seconds if width == 2 else None, labels)
