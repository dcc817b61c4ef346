"""Global top-k-by-magnitude selection with the TIES / tall_masks semantics (ties and the off-by-one included)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mergeflow.declarations.common import check_fraction
from mergeflow.merging.common import StateDict


def _magnitude_dtype(tensors: Sequence[torch.Tensor]) -> torch.dtype:
    return torch.float64 if any(tensor.dtype == torch.float64 for tensor in tensors) else torch.float32


def magnitude_threshold(tensors: Sequence[torch.Tensor], keep: float) -> torch.Tensor | None:
    """The |x| threshold that keeps a fraction ``keep`` of all entries of ``tensors`` taken together.

    As ``topk_values_mask`` does: with d entries, threshold = kthvalue(|x|, d - int(d * keep)), and every entry with
    |x| >= threshold is kept, i.e. int(d * keep) + 1 entries plus ties. ``keep == 1`` (no trim) returns None, the
    "keep everything" marker, because kthvalue(0) does not exist.
    """
    keep = check_fraction("k (keep fraction)", keep, allow_zero=False)
    dtype = _magnitude_dtype(tensors)
    flat = torch.cat([tensor.detach().reshape(-1).to(dtype).abs() for tensor in tensors])
    total = flat.numel()
    kept = int(total * keep)
    if total == 0 or kept >= total:
        return None
    return torch.kthvalue(flat, total - kept).values


def above_threshold(tensor: torch.Tensor, threshold: torch.Tensor | None) -> torch.Tensor:
    """|tensor| >= threshold as torch.bool, compared in the threshold's dtype (all True when there is no threshold)."""
    if threshold is None:
        return torch.ones(tensor.shape, dtype=torch.bool, device=tensor.device)
    return tensor.detach().to(threshold.dtype).abs() >= threshold


def trim_rows(stack: torch.Tensor, thresholds: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """Row t of ``stack`` with entries |x| < thresholds[t] set to zero: ``masked(stack, above_threshold(...))`` in
    value (a dropped entry may be -0 instead of +0), computed with float operations only.

    Why: on this PyTorch CPU build, ops producing or consuming bool tensors (comparisons, ``where``,
    ``masked_fill``) run 5-35x slower than plain float ops, and trimming is the hot loop of TIES. |x| >= t is
    |x| > nextafter(t, -inf) exactly (no float lies in between), which ``threshold`` computes without a mask.
    Rows whose threshold has another dtype than the stack fall back to the comparison in the threshold's dtype.
    """
    out = stack.abs()
    for row, source, threshold in zip(out, stack, thresholds, strict=True):
        if threshold is None:
            continue
        if threshold.dtype != row.dtype:
            row.mul_(above_threshold(source, threshold))
            continue
        below = float(torch.nextafter(threshold, torch.tensor(float("-inf"), dtype=threshold.dtype)))
        torch.nn.functional.threshold(row, below, 0.0, inplace=True)
    return out.copysign_(stack)


def topk_magnitude_mask(tensors: Mapping[str, torch.Tensor], keep: float) -> StateDict:
    """Boolean masks keeping the top ``keep`` fraction by magnitude over *all* of ``tensors`` (global, not per key)."""
    threshold = magnitude_threshold(list(tensors.values()), keep)
    return {key: above_threshold(value, threshold) for key, value in tensors.items()}


_DIGITS = {torch.float32: 2, torch.float64: 4}  # 16-bit digits in the bit pattern
_FLOAT_OF = {2: (np.uint32, np.float32), 4: (np.uint64, np.float64)}


@dataclass(frozen=True)
class RadixBracket:
    """What the last radix-select pass knows about one key, before the thresholds are known.

    Per task t the threshold lies in ``[lower[t], upper[t])``: every digit of its bit pattern but the last is
    fixed. An entry with ``|x| >= upper[t]`` is kept whatever the last digit, one with ``|x| < lower[t]`` is
    trimmed; the entries in between (``match[t]``, flat over the key) are kept iff their last 16-bit digit
    (``digit[t]``) is >= the threshold's (``last_digit``). A consumer of the last pass (TIES's sign votes) can
    so do its work on this pass instead of another one over the files.
    """

    lower: list[torch.Tensor]
    upper: list[torch.Tensor]
    match: list[np.ndarray]
    digit: list[np.ndarray]


RadixObserver = Callable[[str, Sequence[torch.Tensor], RadixBracket], None]


def last_digit(threshold: torch.Tensor) -> int:
    """The least significant 16-bit digit of ``threshold``'s bit pattern (float32 or float64)."""
    return int(threshold.reshape(1).numpy().view(np.uint16)[0])


def _bracket_bound(prefix: Sequence[int], digits: int, above: bool) -> torch.Tensor:
    """The float whose bit pattern is ``prefix`` (most significant digits first; +1 if ``above``) then a zero digit."""
    bits_type, float_type = _FLOAT_OF[digits]
    value = 0
    for digit in prefix:
        value = (value << 16) | digit
    value = (value + int(above)) << 16
    return torch.from_numpy(np.array([value], dtype=bits_type).view(float_type).copy()).reshape(())


def streamed_magnitude_thresholds(
    keys: Sequence[str], tensors: Callable[[str], Sequence[torch.Tensor]], num_tasks: int, magnitude_dtype: torch.dtype,
    keep: float, *, final_pass: RadixObserver | None = None,
) -> list[torch.Tensor | None]:
    """Per task, exactly ``magnitude_threshold`` over that task's keys, without ever holding a whole task vector.

    ``tensors(key)`` gives the T tensors of one key (read again on every pass). A radix select on the bit
    pattern of |x| (monotone for non-negative IEEE floats), one 16-bit digit per pass, most significant first:
    each pass histograms the next digit of the entries whose higher digits match the prefix found so far and
    keeps the bucket holding the rank-th smallest value. Two passes for float32 (four for float64) give the
    exact bit pattern; memory is T histograms of 65536 counts. The sign bit is masked off rather than taking
    abs(), and the digits are read as uint16 views, so a pass costs about one read of the data. ``keep == 1``
    (no trim) costs no pass at all.

    ``final_pass(key, tensors, bracket)``, if given, is called on the last pass for every key, with that key's
    tensors and :class:`RadixBracket` (not called when the first pass finds nothing to trim).
    """
    keep = check_fraction("k (keep fraction)", keep, allow_zero=False)
    if magnitude_dtype not in _DIGITS:
        raise ValueError(f"magnitude dtype must be float32 or float64, got {magnitude_dtype}")
    if keep >= 1.0:  # int(total * 1.0) == total: nothing is ever trimmed
        return [None] * num_tasks
    digits = _DIGITS[magnitude_dtype]
    top = digits - 1  # little-endian: the last uint16 of each value is the most significant
    total = 0  # counted on the first pass
    prefixes: list[list[int]] = [[] for _ in range(num_tasks)]
    ranks = [0] * num_tasks  # 1-based rank of the wanted value among the entries matching the prefix
    for level in range(digits):
        counts = np.zeros((num_tasks, 1 << 16), dtype=np.int64)
        last = level == digits - 1 and final_pass is not None
        bracket = None
        if last:
            bracket = RadixBracket([_bracket_bound(prefix, digits, False) for prefix in prefixes],
                                   [_bracket_bound(prefix, digits, True) for prefix in prefixes], [], [])
        for key in keys:
            key_tensors = tensors(key)
            matches: list[np.ndarray] = []
            finals: list[np.ndarray] = []
            for task, tensor in enumerate(key_tensors):
                words = tensor.detach().reshape(-1).to(magnitude_dtype).numpy().view(np.uint16).reshape(-1, digits)
                if level == 0:
                    total += words.shape[0] if task == 0 else 0
                    counts[task] += np.bincount(words[:, top] & 0x7FFF, minlength=1 << 16)
                    continue
                match = (words[:, top] & 0x7FFF) == prefixes[task][0]
                for depth in range(1, level):
                    match &= words[:, top - depth] == prefixes[task][depth]
                counts[task] += np.bincount(words[match, top - level], minlength=1 << 16)
                if last:
                    matches.append(match)
                    finals.append(words[:, 0])
            if last and bracket is not None and final_pass is not None:
                final_pass(key, key_tensors, RadixBracket(bracket.lower, bracket.upper, matches, finals))
        if level == 0:
            kept = int(total * keep)
            if total == 0 or kept >= total:
                return [None] * num_tasks
            ranks = [total - kept] * num_tasks
        cumulative = counts.cumsum(axis=1)
        for task in range(num_tasks):
            digit = int(np.searchsorted(cumulative[task], ranks[task]))  # first bucket with cumulative >= rank
            ranks[task] -= int(cumulative[task, digit - 1]) if digit else 0
            prefixes[task].append(digit)
    thresholds: list[torch.Tensor | None] = []
    for prefix in prefixes:
        words = np.array(prefix[::-1], dtype=np.uint16)  # least significant first
        thresholds.append(torch.from_numpy(words.view(np.float32 if digits == 2 else np.float64).copy()).reshape(()))
    return thresholds
