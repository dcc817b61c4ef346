"""The adaptation registry (names of the results table -> decomposition and learnable parts) and the rank analysis."""

from __future__ import annotations

import pytest
import torch
from adaptation_toy import toy_base, toy_task_vectors

from mergeflow.adaptation.methods import ADAPT_METHODS, build_adaptive
from mergeflow.adaptation.ranks import energy_rank
from mergeflow.errors import MergeflowError
from mergeflow.merging.common import add_to_base
from mergeflow.merging.registry import run_method

STATIC = {  # (method, its settings) -> (static registry method, overrides) that step 0 must equal
    "adamerging": ({"prior": 0.3}, "task_arithmetic", {"scale": 0.3}),
    "adarank_ta": ({"prior": 0.3, "rank": 1.0}, "task_arithmetic", {"scale": 0.3}),
    "adarank_cart": ({"prior": 2.3, "rank": 0.16}, "cart", {"scale": 2.3, "rank": 0.16}),
    "adarank_tsv_m": ({"prior": 1.0}, "tsv_m", {"scale": 1.0}),
    "adarank_iso_cts": ({"prior": 1.0, "common": 0.8}, "iso_cts", {"scale": 1.0, "common": 0.8}),
}


@pytest.mark.parametrize("method", ADAPT_METHODS)
def test_every_registered_method_starts_at_its_static_base(method: str) -> None:
    settings, static, overrides = STATIC[method]
    base, vectors = toy_base(), toy_task_vectors()
    model = build_adaptive(method, base, vectors, **settings)
    expected = add_to_base(base, run_method(static, vectors, overrides))  # type: ignore[arg-type]
    state = model.hard_state()
    for key, value in expected.items():
        assert torch.allclose(state[key].float(), value.float(), atol=1e-6), key


def test_learn_selects_what_the_optimiser_sees() -> None:
    base, vectors = toy_base(), toy_task_vectors()
    both = build_adaptive("adarank_ta", base, vectors, prior=0.3)
    only_lambda = build_adaptive("adarank_ta", base, vectors, prior=0.3, learn="lambda")
    only_masks = build_adaptive("adarank_ta", base, vectors, prior=0.3, learn="masks")
    assert len(both.parameters_to_learn()) == 1 + len(both.svd_keys)
    assert [p is only_lambda.coefficients for p in only_lambda.parameters_to_learn()] == [True]
    assert all(p is not only_masks.coefficients for p in only_masks.parameters_to_learn())
    assert len(only_masks.parameters_to_learn()) == len(only_masks.svd_keys)
    adamerging = build_adaptive("adamerging", base, vectors, prior=0.3)
    assert adamerging.clamp and not adamerging.svd_keys


def test_invalid_requests_are_refused_with_the_reason() -> None:
    base, vectors = toy_base(), toy_task_vectors()
    with pytest.raises(MergeflowError, match="adaptation method"):
        build_adaptive("adarank_xyz", base, vectors, prior=0.3)
    with pytest.raises(MergeflowError, match="adamerging learns its coefficients only"):
        build_adaptive("adamerging", base, vectors, prior=0.3, rank=0.5)
    with pytest.raises(MergeflowError, match="learn"):
        build_adaptive("adarank_ta", base, vectors, prior=0.3, learn="everything")
    with pytest.raises(MergeflowError, match="granularity applies to adamerging"):
        build_adaptive("adarank_cart", base, vectors, prior=2.3, granularity="task")


def test_energy_rank_counts_components_up_to_95_percent_of_the_energy() -> None:
    values = torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [10.0, 0.1, 0.1]])
    # energies 9+1 (0.9 < 0.95 after one), 1+1+1 (needs all three), none, 100 of 100.02
    assert energy_rank(values).tolist() == [2, 3, 0, 1]
    with pytest.raises(MergeflowError):
        energy_rank(values, energy=0.0)
