"""TIES-Merging: trim each task vector to its top-k magnitudes, elect a sign per entry, merge the agreeing entries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mergeflow.declarations.common import check_choice, check_fraction, check_number
from mergeflow.declarations.merging import AGGREGATES
from mergeflow.merging.common import StateDict, TaskVectors, stack_tensors
from mergeflow.merging.plan import InMemoryVectors, KeyVectors, MergePlan, as_delta, column_chunks, delta_kernel, in_memory
from mergeflow.merging.topk import RadixBracket, above_threshold, last_digit, trim_rows


@dataclass(frozen=True)
class TiesStatistics:
    """TIES's two global quantities: one |x| trim threshold per task (None = keep all) and the majority sign."""

    thresholds: list[torch.Tensor | None]
    majority_sign: float


def _trimmed(tensors: Sequence[torch.Tensor], thresholds: list[torch.Tensor | None]) -> torch.Tensor:
    """The (T, *shape) stack of trimmed task vectors at one key; recomputed per pass instead of holding T copies."""
    return trim_rows(stack_tensors(tensors), thresholds)


def _separate_vote_pass(vectors: KeyVectors, thresholds: list[torch.Tensor | None]) -> int:
    """The sum of the sign votes over every key, by a pass of its own (the reference the folded votes equal)."""
    sign_votes = 0
    for key in vectors.keys:
        for _, chunk in column_chunks(vectors.tensors(key)):
            sign_votes += int(torch.sign(_trimmed(chunk, thresholds).sum(dim=0)).to(torch.int64).sum())
    return sign_votes


PENDING_LIMIT = 1 << 23  # entries (T per column) SignVotes may hold for columns it settles after the pass


class SignVotes:
    """TIES's sign votes counted on the last radix-select pass (``topk.RadixBracket``), before the thresholds are
    known, so that TIES costs three passes over the experts instead of four, with the very same majority sign.

    Per chunk of a key (the chunks of the separate vote pass), the votes are computed as that pass computes them,
    but with every task's threshold at the bottom of its bracket (every uncertain entry kept). A column with no
    uncertain entry has its vote then: its trimmed values are the same bits as with the real thresholds, and so is
    its sum. A column with one uncertain entry, of task t with last digit d, has that vote if d >= the last digit of
    t's threshold (kept), and otherwise the vote of the column without it (dropped), which is settled from the exact
    sum of the other entries (see ``settle``); both are added to histograms of task t over d, summed once the
    thresholds are known. A column with several uncertain entries (about p^2 of them, p ~ 0.3 % per task at
    k = 0.2) is kept, T values, up to ``limit`` entries, and settled after the pass with the real thresholds.

    A settled vote is the sign every summation order gives; the rare column whose vote depends on the order (a sum
    cancelling below the rounding error) is left undecided, and since only the sign of the total matters, the
    undecided columns matter only if they could flip it. ``majority`` returns None (the caller then runs the
    separate pass) if they could, if the limit was passed, or if the last pass never came (nothing to trim).
    """

    def __init__(self, num_tasks: int, limit: int | None = None) -> None:
        self.num_tasks, self.limit = num_tasks, PENDING_LIMIT if limit is None else limit
        self.certain = 0
        bins = num_tasks << 16  # (task, last digit) flattened
        self.kept = np.zeros(bins, dtype=np.float64)  # integer sums, exact below 2^53
        self.dropped = np.zeros(bins, dtype=np.float64)
        self.dropped_undecided = np.zeros(bins, dtype=np.float64)
        self.pending: list[torch.Tensor] = []
        self.pending_entries = 0
        self.over_limit = False
        self.keys_seen = 0

    def observe(self, key: str, tensors: Sequence[torch.Tensor], bracket: RadixBracket) -> None:
        self.keys_seen += 1
        if self.over_limit:
            return
        # the uncertain entries, sparse (~p of each task's entries): column, task and last digit, by column
        columns, tasks, digits = [], [], []
        for task, (match, digit, lower) in enumerate(zip(bracket.match, bracket.digit, bracket.lower, strict=True)):
            found = np.flatnonzero(match)
            if float(lower) == 0.0:  # the bracket starts at 0: exact zeros fall in it, and count for no vote
                found = found[digit[found] != 0]
            columns.append(found)
            tasks.append(np.full(len(found), task, dtype=np.int64))
            digits.append(digit[found].astype(np.int64))
        column = np.concatenate(columns)
        order = np.argsort(column, kind="stable")
        column, task_of, digit_of = column[order], np.concatenate(tasks)[order], np.concatenate(digits)[order]
        uncertain, first, count = np.unique(column, return_index=True, return_counts=True)
        single = count == 1
        single_columns, single_bins = uncertain[single], (task_of[first[single]] << 16) | digit_of[first[single]]
        single_tasks, several_columns = task_of[first[single]], uncertain[count >= 2]
        kept_votes: list[np.ndarray] = []
        withouts: list[torch.Tensor] = []  # the single-uncertain columns without their uncertain entry
        for start, chunk in column_chunks(tensors):
            stop = start + chunk[0].numel()
            trimmed = trim_rows(stack_tensors(chunk), bracket.lower)
            vote_low = torch.sign(trimmed.sum(dim=0)).to(torch.int64)
            here = uncertain[np.searchsorted(uncertain, start) : np.searchsorted(uncertain, stop)] - start
            self.certain += int(vote_low.sum()) - int(vote_low[torch.from_numpy(here)].sum())
            low, high = np.searchsorted(single_columns, start), np.searchsorted(single_columns, stop)
            if high > low:
                local = torch.from_numpy(single_columns[low:high] - start)
                kept_votes.append(vote_low[local].numpy())
                without = trimmed[:, local]
                without[torch.from_numpy(single_tasks[low:high]), torch.arange(len(local))] = 0.0
                withouts.append(without)
            several = several_columns[np.searchsorted(several_columns, start) : np.searchsorted(several_columns, stop)] - start
            if len(several):
                self.pending_entries += len(several) * self.num_tasks
                if self.pending_entries > self.limit:
                    self.over_limit, self.pending = True, []
                    return
                self.pending.append(stack_tensors(chunk)[:, torch.from_numpy(several)].clone())
        if kept_votes:  # once per key: fewer, larger calls
            votes, settled = settle(torch.cat(withouts, dim=1))
            votes_np, settled_np = votes.numpy(), settled.numpy()
            _histogram_add(self.kept, single_bins, np.concatenate(kept_votes))
            _histogram_add(self.dropped, single_bins[settled_np], votes_np[settled_np])
            _histogram_add(self.dropped_undecided, single_bins[~settled_np], np.ones(int((~settled_np).sum())))

    def majority(self, thresholds: list[torch.Tensor | None], num_keys: int) -> float | None:
        """sign(sum of all votes) for these thresholds, or None if it must come from a separate pass."""
        if self.over_limit or self.keys_seen != num_keys or any(threshold is None for threshold in thresholds):
            return None
        votes, undecided = self.certain, 0
        for task, threshold in enumerate(thresholds):
            assert threshold is not None
            first, digit, end = task << 16, (task << 16) + last_digit(threshold), (task + 1) << 16
            votes += int(self.kept[digit:end].sum()) + int(self.dropped[first:digit].sum())
            undecided += int(self.dropped_undecided[first:digit].sum())
        for block in self.pending:
            block_votes, settled = settle(trim_rows(block, thresholds))
            votes += int(block_votes[settled].sum())
            undecided += int((~settled).sum())
        if undecided and abs(votes) <= undecided:
            return None
        return float((votes > 0) - (votes < 0))


def _histogram_add(histogram: np.ndarray, bins: np.ndarray, weights: np.ndarray) -> None:
    """histogram[bins] += weights, repeated bins adding up (in place: no T x 65536 temporary)."""
    np.add.at(histogram, bins, weights)


def settle(trimmed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(vote sign(sum_t x_t) per column of ``trimmed`` as int64, whether every summation order gives that vote).

    Settled: a column with at most two non-zero terms (one rounding of the exact sum), one whose partial sums are
    all exact (every term a multiple of g and sum |x| <= 2^p g, p the precision), or one whose exact sum exceeds
    the worst rounding error of any order, gamma_{T-1} * sum |x|. The vote is sign(exact sum) there (computed in
    float64 with an error bound); elsewhere it is meaningless."""
    wide = trimmed.to(torch.float64)
    terms = wide.shape[0]
    precision = 53 if trimmed.dtype == torch.float64 else 24
    nonzero = wide != 0
    magnitude = wide.abs().sum(dim=0) * (1 + 2 * terms * 2.0**-53)  # an upper bound of sum |x|
    total = wide.sum(dim=0)  # error <= (terms - 1) 2^-53 sum |x|
    unit = 2.0**-precision
    bound = ((terms - 1) * unit / (1 - (terms - 1) * unit) + terms * 2.0**-53) * magnitude
    finite = magnitude < torch.finfo(trimmed.dtype).max / 2
    settled = finite & ((nonzero.sum(dim=0) <= 2) | (total.abs() > bound))
    rest = (finite & ~settled).nonzero().flatten()
    if len(rest):  # the exact-partial-sums rule, only where the cheap ones did not settle
        part = wide[:, rest]
        mantissa, exponent = torch.frexp(part)
        integer = (mantissa.abs() * 2.0**53).to(torch.int64)
        lowest = (integer & -integer).clamp(min=1).to(torch.float64).log2().to(torch.int64) + exponent.to(torch.int64) - 53
        grain = torch.where(part != 0, lowest, torch.full_like(lowest, 1 << 20)).min(dim=0).values
        limit = torch.ldexp(torch.ones(len(rest), dtype=torch.float64), (grain + precision).clamp(max=1000).to(torch.float64))
        settled[rest] = magnitude[rest] <= limit
    return torch.sign(total).to(torch.int64), settled


def settled_votes(trimmed: torch.Tensor) -> tuple[int, int]:
    """(sum of the settled columns' votes, number of unsettled columns), see ``settle``."""
    votes, settled = settle(trimmed)
    return int(votes[settled].sum()), int((~settled).sum())


def ties_statistics(vectors: KeyVectors, k: float) -> TiesStatistics:
    """The global passes: per-task thresholds over the task's whole flattened vector (TIES trims globally, not
    per layer), then the majority sign: the sign of the total of the votes sign(sum_t trimmed_t) over every
    entry. A source read in passes counts the votes on its last threshold pass (``SignVotes``); otherwise, or if
    that cannot settle the sign, they take a pass of their own."""
    votes = SignVotes(len(vectors.names))
    thresholds = vectors.magnitude_thresholds(k, final_pass=votes.observe)
    majority = votes.majority(thresholds, len(vectors.keys))
    if majority is None:
        total = _separate_vote_pass(vectors, thresholds)
        majority = float((total > 0) - (total < 0))
    return TiesStatistics(thresholds, majority)


def ties_key(tensors: Sequence[torch.Tensor], statistics: TiesStatistics, aggregate: str, scale: float) -> torch.Tensor:
    """The per-key kernel: trim, elect (zero sums take the majority sign), disjoint merge, scale, cast back."""
    trimmed = _trimmed(tensors, statistics.thresholds)
    elected = torch.sign(trimmed.sum(dim=0))
    # A zero sum takes the majority sign; if that is 0 too the official where(sign > 0, x > 0, x < 0) selects
    # the negative entries, i.e. acts as sign -1. Float arithmetic on {-1, 0, 1} is exact (see trim_rows' why).
    elected.add_((1 - elected.abs()) * (statistics.majority_sign or -1.0))
    agreeing = trimmed.mul_(elected).clamp_(min=0)  # |x| where x has the elected sign, else 0
    total = agreeing.sum(dim=0).mul_(elected)  # = the sum of the agreeing signed entries, exactly
    if aggregate == "mean":
        total = total / torch.sign(agreeing).sum(dim=0).clamp(min=1)
    return (scale * total).to(tensors[0].dtype)


def trim_masks(task_vectors: TaskVectors, k: float = 0.2) -> dict[str, StateDict]:
    """The per-task boolean masks of the trim step (for inspection and tests)."""
    vectors = InMemoryVectors(task_vectors)
    thresholds = vectors.magnitude_thresholds(k)
    return {
        name: {key: above_threshold(vector[key], threshold) for key in vectors.keys}
        for (name, vector), threshold in zip(task_vectors.items(), thresholds, strict=True)
    }


def ties_plan(vectors: KeyVectors, *, k: float = 0.2, aggregate: str = "mean", scale: float = 1.0) -> MergePlan:
    """Check the hyperparameters, run the global passes, and return the per-key TIES kernel."""
    k = check_fraction("k (TIES keep fraction)", k, allow_zero=False)
    aggregate = check_choice("aggregate", aggregate, AGGREGATES)
    scale = check_number("scale", scale)
    statistics = ties_statistics(vectors, k)
    return MergePlan(delta_kernel(lambda key, tensors: ties_key(tensors, statistics, aggregate, scale)), elementwise=True)


def ties_merge(task_vectors: TaskVectors, *, k: float = 0.2, aggregate: str = "mean", scale: float = 1.0) -> StateDict:
    """scale * tau_TIES, the merged task vector (add it to theta_0 with ``add_to_base``).

    - Trim: per task keep |x| >= kthvalue(|x|, d - int(d*k)) over all keys together (ties kept, so
      int(d*k)+1 or more entries survive); ``k`` is a fraction in (0, 1], 1 meaning no trim.
    - Elect: gamma = sign(sum_t trimmed_t); a zero sum takes the majority sign sign(sum of all gammas)
      (the "mass" rule); if that is 0 too, gamma stays 0 and negative entries are selected, as the official
      ``torch.where(sign > 0, x > 0, x < 0)`` does.
    - Disjoint merge over strictly agreeing entries: ``aggregate="mean"`` (dis-mean, the original repo and
      tall_masks' ``method=ties``; default) or ``"sum"`` (dis-sum, the ViT copies in AdaMerging/EMR/DaWin and
      tall_masks' TALL/Consensus-TIES).
    Default ``scale=1.0`` is the paper's no-validation lambda; the codebases search it on validation.
    """
    return as_delta(in_memory(ties_plan, task_vectors, k=k, aggregate=aggregate, scale=scale))
