"""Step 0 of every adaptive merge is its static base method (docs/methods.md §3(d), §11(d)).

Exact equality is impossible: the adaptive model adds sum_t lam * U_t diag(s_t) V_t (or sum_t lam * tau_t) term
by term, while the static code rounds scale * sum_t tau_t or one product of concatenated factors, and an SVD
reconstruction is itself only exact to round-off. So we compare float32 results at atol 1e-6 (observed ~1e-7).
"""

from __future__ import annotations

import pytest
import torch
from adaptation_toy import C_PROJ, IN_PROJ, TASKS, ZERO_TEXT, toy_base, toy_task_vectors

from mergeflow.adaptation.components import (
    decompose_cart,
    decompose_iso_cts,
    decompose_plain,
    decompose_ta,
    decompose_tsv_m,
)
from mergeflow.adaptation.model import AdaptiveMerge, adamerging, adarank
from mergeflow.errors import MergeflowError
from mergeflow.merging.common import add_to_base
from mergeflow.merging.predicates import is_cart_matrix, is_tsv_iso_matrix
from mergeflow.merging.registry import run_method

ATOL = 1e-6


@pytest.fixture
def base() -> dict[str, torch.Tensor]:
    return toy_base()


@pytest.fixture
def task_vectors() -> dict[str, dict[str, torch.Tensor]]:
    return toy_task_vectors()


def _static(base: dict[str, torch.Tensor], task_vectors: dict, method: str, **hyperparameters: object) -> dict[str, torch.Tensor]:
    return add_to_base(base, run_method(method, task_vectors, hyperparameters))  # type: ignore[arg-type]


def _assert_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype, key
        assert torch.allclose(actual[key], value, atol=ATOL, rtol=0), (key, (actual[key] - value).abs().max())


def test_adarank_ta_step0_is_task_arithmetic(base: dict, task_vectors: dict) -> None:
    model = adarank(decompose_ta(base, task_vectors), prior=0.3)
    _assert_close(model.hard_state(), _static(base, task_vectors, "task_arithmetic", scale=0.3))
    assert all(rank == 4 for ranks in model.kept_ranks().values() for rank in ranks.values())


@pytest.mark.parametrize("granularity", ["layer", "task"])
def test_adamerging_step0_is_task_arithmetic(base: dict, task_vectors: dict, granularity: str) -> None:
    model = adamerging(base, task_vectors, granularity=granularity)  # type: ignore[arg-type]
    assert model.svd_keys == [] and model.coefficients.shape[1] == (1 if granularity == "task" else len(model.keys))
    _assert_close(model.hard_state(), _static(base, task_vectors, "task_arithmetic", scale=0.3))


@pytest.mark.parametrize(("rank", "prior", "kept"), [(0.16, 2.3, 1), (0.5, 1.4, 2), (0.0, 2.0, 0)])
def test_adarank_cart_step0_is_cart(base: dict, task_vectors: dict, rank: float, prior: float, kept: int) -> None:
    model = adarank(decompose_cart(base, task_vectors, rank), prior=prior)
    _assert_close(model.hard_state(), _static(base, task_vectors, "cart", rank=rank, scale=prior))
    assert {count for ranks in model.kept_ranks().values() for count in ranks.values()} == {kept}


@pytest.mark.parametrize("tail", [True, False])
def test_adarank_tsv_m_step0_is_tsv_m(base: dict, task_vectors: dict, tail: bool) -> None:
    decomposition = decompose_tsv_m(base, task_vectors, tail=tail)
    model = adarank(decomposition, prior=0.8)
    _assert_close(model.hard_state(), _static(base, task_vectors, "tsv_m", scale=0.8))
    # r = 4 (3 for proj) and T = 3: TSV keeps int(r / T) = 1 per task; the tail offers the other r - 1, pruned
    assert decomposition.rank(IN_PROJ) == (4 if tail else 1) and decomposition.rank("visual.proj") == (3 if tail else 1)
    assert {count for ranks in model.kept_ranks().values() for count in ranks.values()} == {1}


@pytest.mark.parametrize(("common", "per_task"), [(0.8, 0), (0.5, 1)])
def test_adarank_iso_cts_step0_is_iso_cts(base: dict, task_vectors: dict, common: float, per_task: int) -> None:
    decomposition = decompose_iso_cts(base, task_vectors, common)
    model = adarank(decomposition, prior=1.2)
    _assert_close(model.hard_state(), _static(base, task_vectors, "iso_cts", common=common, scale=1.2))
    # r = 4, T = 3: Iso keeps c = r - T * per common directions; each task holds its per + a share of the c
    assert decomposition.rank(C_PROJ) == per_task + (4 - 3 * per_task)
    assert all(mask.all() for mask in decomposition.initial_keep.values())


def test_svd_keys_follow_each_base_predicate(base: dict, task_vectors: dict) -> None:
    floating = [key for key, value in base.items() if value.is_floating_point()]
    nonzero = [key for key in floating if key != ZERO_TEXT]
    assert decompose_ta(base, task_vectors).svd_keys == sorted(k for k in nonzero if is_cart_matrix(k, base[k]))
    assert decompose_cart(base, task_vectors).svd_keys == sorted(k for k in nonzero if is_cart_matrix(k, base[k]))
    assert decompose_tsv_m(base, task_vectors).svd_keys == sorted(k for k in nonzero if is_tsv_iso_matrix(k, base[k]))
    assert decompose_iso_cts(base, task_vectors).svd_keys == sorted(k for k in nonzero if is_tsv_iso_matrix(k, base[k]))
    plain = decompose_plain(base, task_vectors)
    assert plain.svd_keys == [] and plain.keys == sorted(floating) and list(plain.untouched) == ["num_batches_tracked"]


def test_ta_factors_reconstruct_each_task_vector(base: dict, task_vectors: dict) -> None:
    decomposition = decompose_ta(base, task_vectors)
    for index, task in enumerate(TASKS):
        for key in (IN_PROJ, C_PROJ):
            left, values, right = decomposition.factors(index, key)
            assert torch.allclose((left * values) @ right, task_vectors[task][key], atol=1e-6)


def test_cart_origin_is_the_experts_average(base: dict, task_vectors: dict) -> None:
    decomposition = decompose_cart(base, task_vectors)
    for key in decomposition.keys:
        average = torch.stack([base[key] + vector[key] for vector in task_vectors.values()]).mean(0)
        assert torch.allclose(decomposition.origin[key], average, atol=1e-6), key


def test_mismatched_base_is_refused(base: dict, task_vectors: dict) -> None:
    del base[IN_PROJ]
    with pytest.raises(MergeflowError, match="base model has no"):
        decompose_ta(base, task_vectors)
    with pytest.raises(MergeflowError, match="granularity"):
        AdaptiveMerge(decompose_plain(toy_base(), task_vectors), granularity="block")  # type: ignore[arg-type]
