"""TIES streams in three passes (two radix-select passes, the sign votes folded into the second, the output) and
its result is bit for bit the four-pass one (a separate vote pass) and the in-memory ``ties_merge`` (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mergeflow.merging import ties as ties_module
from mergeflow.merging.common import add_to_base
from mergeflow.merging.registry import get_method
from mergeflow.merging.streaming import StreamingVectors, merge_files
from mergeflow.merging.ties import SignVotes, settled_votes, ties_merge, ties_statistics
from mergeflow.statedict.io import load_tensors
from mergeflow.statedict.lazy import LazySafetensors
from mergeflow.statedict.task_vectors import task_vector

SHAPES = {
    "a.scale": (),  # one entry: its vote is a single-column sum
    "b.bias": (7,),
    "c.weight": (33, 17),
    "d.weight": (300, 257),  # 77,100 entries: two vote chunks, the second short
    "e.kernel": (4, 3, 5, 5),
}


def _models(dtype: torch.dtype, seed: int, tasks: int) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """A base and experts on a grid of 1/8 (exact arithmetic, so |tau| has many ties at any threshold) for
    half of the experts, continuous for the others; exact zeros, a few huge opposite-sign entries (a cancelling
    vote), an int buffer."""
    generator = torch.Generator().manual_seed(seed)
    huge = 2e4 if dtype == torch.float16 else 3e7
    base = {key: (torch.randn(shape, generator=generator) * 8).round() / 8 for key, shape in SHAPES.items()}
    experts = {}
    for index in range(tasks):
        expert = {}
        for key, shape in SHAPES.items():
            tau = torch.randn(shape, generator=generator)
            if index % 2 == 0:
                tau = (tau * 8).round() / 8  # ties in |tau|, and exact zeros
            tau = tau * (torch.rand(shape, generator=generator) > 0.3)  # more exact zeros
            if key == "d.weight":
                tau.view(-1)[index :: 997] = huge if index % 2 else -huge  # huge terms that cancel across tasks
            expert[key] = (base[key] + tau).to(dtype)
        expert["steps"] = torch.tensor([3, 1], dtype=torch.int64)
        experts[f"task{index}"] = expert
    base = {key: value.to(dtype) for key, value in base.items()}
    base["steps"] = torch.tensor([3, 1], dtype=torch.int64)
    return base, experts


def _write(tmp_path: Path, dtype: torch.dtype, seed: int, tasks: int) -> tuple[Path, dict[str, Path], dict[str, torch.Tensor], dict]:
    base, experts = _models(dtype, seed, tasks)
    save_file(base, tmp_path / "base.safetensors")
    paths = {}
    for name, expert in experts.items():
        paths[name] = tmp_path / f"{name}.safetensors"
        save_file(expert, paths[name])
    return tmp_path / "base.safetensors", paths, base, experts


class _Counted:
    """Counts StreamingVectors.read calls per key while a merge runs (a pass reads every key once)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: dict[str, int] = {}
        original = StreamingVectors.read

        def read(vectors: StreamingVectors, key: str):  # type: ignore[no-untyped-def]
            self.reads[key] = self.reads.get(key, 0) + 1
            return original(vectors, key)

        monkeypatch.setattr(StreamingVectors, "read", read)

    def passes(self) -> int:
        counts = set(self.reads.values())
        assert len(counts) == 1, self.reads  # every key is read the same number of times
        return counts.pop()


def _merge(tmp_path: Path, base: Path, experts: dict[str, Path], name: str, overrides: dict) -> dict[str, torch.Tensor]:
    out = tmp_path / f"{name}.safetensors"
    merge_files("ties", base, experts, out, overrides)
    return load_tensors(out)


def _same_bits(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    for key in left:
        assert left[key].dtype == right[key].dtype, key
        assert left[key].shape == right[key].shape, key
        as_bytes = [t.reshape(-1).contiguous().view(torch.uint8) if t.is_floating_point() else t.reshape(-1) for t in (left[key], right[key])]
        assert torch.equal(*as_bytes), key


@pytest.mark.parametrize(("dtype", "seed", "tasks", "k", "aggregate"), [
    (torch.float32, 0, 4, 0.2, "mean"),
    (torch.float32, 1, 3, 0.5, "sum"),
    (torch.float32, 2, 8, 0.05, "mean"),
    (torch.float64, 3, 3, 0.2, "mean"),
    (torch.bfloat16, 4, 4, 0.3, "sum"),
    (torch.float16, 5, 5, 0.2, "mean"),
])
def test_folded_votes_bit_identical_in_three_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, seed: int, tasks: int, k: float, aggregate: str
) -> None:
    base_path, paths, base, experts = _write(tmp_path, dtype, seed, tasks)
    overrides = {"k": k, "aggregate": aggregate, "scale": 0.7}
    seen: list[SignVotes] = []

    class Recording(SignVotes):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            seen.append(self)

    with monkeypatch.context() as patch:
        patch.setattr(ties_module, "SignVotes", Recording)
        counted = _Counted(patch)
        folded = _merge(tmp_path, base_path, paths, "folded", overrides)
        folded_passes = counted.passes()
    # the four-pass reference: the majority sign from a separate vote pass, as before the fold
    with monkeypatch.context() as patch:
        patch.setattr(SignVotes, "majority", lambda self, thresholds, num_keys: None)
        counted = _Counted(patch)
        separate = _merge(tmp_path, base_path, paths, "separate", overrides)
        separate_passes = counted.passes()
    radix = 4 if dtype == torch.float64 else 2
    assert (folded_passes, separate_passes) == (radix + 1, radix + 2)
    _same_bits(folded, separate)
    # and the in-memory method (kthvalue thresholds, a vote loop of its own)
    vectors = {name: task_vector(expert, base) for name, expert in experts.items()}
    _same_bits(folded, add_to_base(base, ties_merge(vectors, **overrides)))
    # the data reach the branches of the fold beyond the certain columns: one uncertain entry, several
    (votes,) = seen
    assert votes.dropped.any() and votes.pending


def test_majority_sign_equals_the_separate_pass_on_many_draws(tmp_path: Path) -> None:
    """The statistics themselves (thresholds and majority sign) over many small random sources, float32."""
    generator = torch.Generator().manual_seed(11)
    for draw in range(12):
        folder = tmp_path / str(draw)
        folder.mkdir()
        base = {"w": torch.zeros(40, 9), "v": torch.zeros(5)}
        save_file(base, folder / "base.safetensors")
        experts = {}
        for index in range(3):
            scale = 4 if draw % 3 == 0 else 1000
            expert = {key: (torch.randn(value.shape, generator=generator) * scale).round() / scale for key, value in base.items()}
            save_file(expert, folder / f"t{index}.safetensors")
            experts[f"t{index}"] = LazySafetensors(folder / f"t{index}.safetensors")
        with LazySafetensors(folder / "base.safetensors") as base_file:
            vectors = StreamingVectors(base_file, experts)
            folded = ties_statistics(vectors, 0.3)
            total = ties_module._separate_vote_pass(vectors, folded.thresholds)
        for expert in experts.values():
            expert.close()
        assert folded.majority_sign == float((total > 0) - (total < 0))


def test_over_the_pending_limit_falls_back_to_the_separate_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base_path, paths, base, experts = _write(tmp_path, torch.float32, 6, 4)
    monkeypatch.setattr(ties_module, "PENDING_LIMIT", 1)
    counted = _Counted(monkeypatch)
    merged = _merge(tmp_path, base_path, paths, "limited", {"k": 0.2})
    assert counted.passes() == 4
    vectors = {name: task_vector(expert, base) for name, expert in experts.items()}
    _same_bits(merged, add_to_base(base, ties_merge(vectors, k=0.2)))


def test_no_trim_costs_no_threshold_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base_path, paths, base, experts = _write(tmp_path, torch.float32, 7, 3)
    counted = _Counted(monkeypatch)
    merged = _merge(tmp_path, base_path, paths, "untrimmed", {"k": 1.0})
    assert counted.passes() == 2  # the votes, the output
    vectors = {name: task_vector(expert, base) for name, expert in experts.items()}
    _same_bits(merged, add_to_base(base, ties_merge(vectors, k=1.0)))


def test_tall_ties_folds_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base_path, paths, _, _ = _write(tmp_path, torch.float32, 8, 3)
    counted = _Counted(monkeypatch)
    assert get_method("tall_ties").returns == "bank"
    merge_files("tall_ties", base_path, paths, tmp_path / "bank.safetensors", {"k": 0.2})
    assert counted.passes() == 3


def test_settled_votes() -> None:
    f = torch.float32
    columns = torch.tensor([
        [1.0, 0.0, 3e7, 1.5, 0.125, 1e-3, 3e7, 0.0],
        [-1.0, 0.0, 0.125, -1.5, 0.125, 2e-3, 0.125, 0.0],
        [0.0, 0.0, -3e7, 0.0, -0.25, -3e-3, -3e7, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.125, 0.0],
    ], dtype=f)
    # columns: x,-x (2 terms: exactly 0); all zero; 3e7 + 1/8 - 3e7 (order-dependent: undecided);
    # 1.5,-1.5; 1/8+1/8-1/4 (all partial sums exact: 0); 1e-3+2e-3-3e-3 (inexact, near 0: undecided);
    # 3e7 + 1/8 - 3e7 + 1/8 (undecided); zeros
    decided, undecided = settled_votes(columns)
    assert (decided, undecided) == (0, 3)
    clear = torch.tensor([[1.0, -5.0, 2.0], [2.0, 1.0, -1.0], [-0.5, 1.0, -0.5]], dtype=f)
    assert settled_votes(clear) == (1, 0)  # sums 2.5, -3, 0.5: votes +1, -1, +1
