"""The toy test vectors of docs/methods.md §5 (TALL, Consensus), §6 (EMR) and §10 (TIES), reproduced exactly."""

from __future__ import annotations

import pytest
import torch

from mergeflow.merging.bank import reconstruct, task_delta
from mergeflow.merging.basic import task_arithmetic
from mergeflow.merging.emr import emr_merge
from mergeflow.merging.tall import consensus_mask, consensus_merge, consensus_ta, tall_masks, tall_ta, tall_ties
from mergeflow.merging.ties import ties_merge, trim_masks
from mergeflow.merging.topk import topk_magnitude_mask

SIX = {
    "t1": [0.5, -0.2, 0.0, 0.3, -0.1, 0.05],
    "t2": [-0.4, -0.3, 0.0, 0.1, 0.2, 0.0],
    "t3": [0.1, 0.6, 0.0, -0.2, -0.3, 0.0],
}
EIGHT = {
    "t1": [0.5, -0.2, 0.0, 0.3, -0.1, 0.05, 0.4, -0.6],
    "t2": [-0.4, -0.3, 0.0, 0.1, 0.2, 0.0, 0.3, 0.2],
    "t3": [0.1, 0.6, 0.0, -0.2, -0.3, 0.0, 0.5, -0.1],
}
DTYPES = [torch.float32, torch.float64]


def _split(rows: dict[str, list[float]], sizes: list[int], dtype: torch.dtype) -> dict[str, dict[str, torch.Tensor]]:
    """Each row cut into consecutive tensors named k0, k1, ... (sorted key order = row order)."""
    vectors = {}
    for name, row in rows.items():
        parts = torch.tensor(row, dtype=dtype).split(sizes)
        vectors[name] = {f"k{index}": part.clone() for index, part in enumerate(parts)}
    return vectors


def _join(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([tensors[key].reshape(-1) for key in sorted(tensors)])


def _as_list(tensors: dict[str, torch.Tensor]) -> list[int]:
    return [int(x) for x in _join(tensors)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_tall_masks_toy(dtype: torch.dtype) -> None:
    tvs = _split(SIX, [3, 3], dtype)
    bank = tall_ta(tvs, lam=0.4)
    assert torch.allclose(_join(bank.merged), torch.tensor([0.2, 0.1, 0, 0.2, -0.2, 0.05], dtype=dtype), atol=1e-7)
    assert [_as_list(bank.masks[name]) for name in ("t1", "t2", "t3")] == [
        [1, 1, 0, 1, 1, 1],
        [1, 1, 0, 1, 1, 0],
        [1, 1, 0, 1, 1, 0],
    ]
    assert all(mask.dtype == torch.bool for task in bank.masks.values() for mask in task.values())
    at_06 = tall_masks(tvs, bank.merged, 0.6)
    assert _as_list(at_06["t2"]) == [1, 1, 0, 1, 0, 0]
    assert _as_list(at_06["t3"]) == [1, 1, 0, 0, 1, 0]
    per_task = tall_masks(tvs, bank.merged, {"t1": 0.4, "t2": 0.6, "t3": 0.4})
    assert _as_list(per_task["t2"]) == [1, 1, 0, 1, 0, 0] and _as_list(per_task["t3"]) == [1, 1, 0, 1, 1, 0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_tall_reconstruction_uses_the_mask_on_tau_mtl(dtype: torch.dtype) -> None:
    tvs = _split(SIX, [3, 3], dtype)
    base = {"k0": torch.ones(3, dtype=dtype), "k1": torch.full((3,), 2.0, dtype=dtype), "steps": torch.tensor(7)}
    bank = tall_ta(tvs, lam=0.6)
    model = reconstruct(base, bank, "t3")
    expected = torch.tensor([1.2, 1.1, 1.0, 2.0, 1.8, 2.0], dtype=dtype)
    assert torch.allclose(_join({k: model[k] for k in ("k0", "k1")}), expected, atol=1e-7)
    assert torch.equal(model["steps"], torch.tensor(7))


@pytest.mark.parametrize("dtype", DTYPES)
def test_consensus_toy(dtype: torch.dtype) -> None:
    tvs = _split(SIX, [3, 3], dtype)
    bank = tall_ta(tvs, lam=0.4)
    assert _as_list(consensus_mask(bank.masks, 2)) == [1, 1, 0, 1, 1, 0]
    expected = torch.tensor([0.2, 0.1, 0, 0.2, -0.2, 0], dtype=dtype)
    assert torch.allclose(_join(consensus_merge(bank, min_agreement=2, scale=1.0)), expected, atol=1e-7)
    assert torch.allclose(_join(consensus_ta(tvs, lam=0.4, min_agreement=2, scale=0.5)), 0.5 * expected, atol=1e-7)


def test_consensus_zero_agreement_is_task_arithmetic_and_above_t_is_zero_shot() -> None:
    tvs = _split(SIX, [3, 3], torch.float64)
    assert torch.allclose(_join(consensus_ta(tvs, min_agreement=0, scale=0.3)), _join(task_arithmetic(tvs, scale=0.3)))
    assert not _join(consensus_ta(tvs, min_agreement=4, scale=1.0)).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_emr_toy(dtype: torch.dtype) -> None:
    tvs = _split(SIX, [3, 3], dtype)
    bank = emr_merge(tvs)
    assert torch.allclose(_join(bank.merged), torch.tensor([0.5, 0.6, 0, 0.3, -0.3, 0.05], dtype=dtype), atol=1e-7)
    assert [_as_list(bank.masks[name]) for name in ("t1", "t2", "t3")] == [
        [1, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],
    ]
    assert [bank.rescalers[name] for name in ("t1", "t2", "t3")] == pytest.approx([1.0, 10 / 3, 0.6 / 0.7], abs=1e-6)
    assert torch.allclose(_join(task_delta(bank, "t2")), torch.tensor([0, 0, 0, 1.0, 0, 0], dtype=dtype), atol=1e-6)


def test_emr_rescaler_weights_each_tensor_equally_not_each_entry() -> None:
    # Tensors of 2 and 4 entries: per-tensor means give t3 (0.35 + 0.125) / (0.55 + 0.075) = 0.76,
    # a size-weighted global mean would give 1.2 / 1.4 = 0.857.
    bank = emr_merge(_split(SIX, [2, 4], torch.float64))
    assert bank.rescalers["t3"] == pytest.approx(0.76)


def test_emr_sign_of_a_zero_sum_is_negative() -> None:
    bank = emr_merge({"a": {"w": torch.tensor([0.3, 0.0])}, "b": {"w": torch.tensor([-0.3, 0.0])}})
    # sum 0 -> sigma = -1: only the negative task agrees, tau_uni = -0.3.
    assert torch.equal(bank.merged["w"], torch.tensor([-0.3, 0.0]))
    assert bank.masks["a"]["w"].tolist() == [False, False]
    assert bank.masks["b"]["w"].tolist() == [True, False]


@pytest.mark.parametrize("sizes", [[8], [3, 5]], ids=["one-key", "two-keys"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_toy(sizes: list[int], dtype: torch.dtype) -> None:
    tvs = _split(EIGHT, sizes, dtype)
    masks = trim_masks(tvs, k=0.5)
    assert [_as_list(masks[name]) for name in ("t1", "t2", "t3")] == [
        [1, 1, 0, 1, 0, 0, 1, 1],
        [1, 1, 0, 0, 1, 0, 1, 1],
        [1, 1, 0, 1, 1, 0, 1, 1],
    ]
    dis_mean = torch.tensor([0.3, 0.6, 0, 0.3, -0.3, 0, 0.4, -0.35], dtype=dtype)
    dis_sum = torch.tensor([0.6, 0.6, 0, 0.3, -0.3, 0, 1.2, -0.7], dtype=dtype)
    assert torch.allclose(_join(ties_merge(tvs, k=0.5, aggregate="mean")), dis_mean, atol=1e-6)
    assert torch.allclose(_join(ties_merge(tvs, k=0.5, aggregate="sum")), dis_sum, atol=1e-6)
    assert torch.allclose(_join(ties_merge(tvs, k=0.5, aggregate="sum", scale=0.3)), 0.3 * dis_sum, atol=1e-6)


def test_ties_trim_is_global_over_keys_not_per_key() -> None:
    # Key "a" holds only small entries: a per-key top-50% would keep one of them, the global one keeps none.
    tvs = {"t": {"a": torch.tensor([0.1, 0.2]), "b": torch.tensor([5.0, 6.0, 7.0, 8.0])}}
    masks = trim_masks(tvs, k=0.5)
    assert masks["t"]["a"].tolist() == [False, False]
    assert masks["t"]["b"].tolist() == [True, True, True, True]  # int(6*0.5)+1 = 4 kept


def test_ties_zero_sum_takes_the_majority_sign() -> None:
    # Entry 0 sums to 0; the other entries vote + twice, so entry 0 elects + and keeps only the positive 0.4.
    tvs = {"a": {"w": torch.tensor([0.4, 0.5, 0.5])}, "b": {"w": torch.tensor([-0.4, 0.1, 0.1])}}
    merged = ties_merge(tvs, k=1.0, aggregate="sum")
    assert merged["w"].tolist() == pytest.approx([0.4, 0.6, 0.6])


def test_tall_ties_uses_the_ties_vector_and_untrimmed_masks() -> None:
    tvs = _split(EIGHT, [8], torch.float64)
    bank = tall_ties(tvs, lam=0.4, k=0.5, aggregate="sum")
    assert torch.allclose(_join(bank.merged), _join(ties_merge(tvs, k=0.5, aggregate="sum")))
    assert _as_list(bank.masks["t1"]) == _as_list(tall_masks(tvs, bank.merged, 0.4)["t1"])
    # t1's entry 4 (-0.1) is trimmed by TIES but its TALL mask still sees the untrimmed value.
    assert _as_list(bank.masks["t1"])[4] == 1


def test_topk_magnitude_mask_keeps_the_off_by_one_and_ties_and_k_1_keeps_all() -> None:
    values = {"w": torch.tensor(EIGHT["t3"])}
    assert topk_magnitude_mask(values, 0.5)["w"].tolist() == [True, True, False, True, True, False, True, True]
    assert topk_magnitude_mask(values, 0.01)["w"].tolist() == [False, True] + [False] * 6  # int(0.08) + 1 = 1 kept
    assert topk_magnitude_mask(values, 1.0)["w"].all()
