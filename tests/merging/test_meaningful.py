"""Degenerate merges are refused by rule (issue 18, item 1): each method's declared "meaningful when" rule, checked the
same way by the API, merge_selecting (the merge@ stages) and the streaming merge (the CLI), and the generic guard
that a merge's output is not theta_0."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import mergeflow as mf
from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank
from mergeflow.merging.registry import require_effect, run_method
from mergeflow.merging.streaming import merge_files
from mergeflow.selection import merge_selecting


def _models(count: int, shape: tuple[int, int] = (6, 4)) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(18)
    base = {"w": torch.randn(shape, generator=generator), "b": torch.randn(shape[1], generator=generator)}
    experts = {f"t{index}": {key: value + 0.1 * torch.randn(value.shape, generator=generator) for key, value in base.items()}
               for index in range(count)}
    return base, experts


def _taus(base: dict[str, torch.Tensor], experts: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {key: expert[key] - base[key] for key in base} for name, expert in experts.items()}


def _never(candidate: object, task: str) -> float:
    raise AssertionError("no candidate may be scored: the grid is refused first")


@pytest.mark.parametrize(
    ("method", "count", "settings", "expected"),
    [
        ("consensus_ta", 1, {"min_agreement": 1}, "consensus_ta needs at least 2 experts, got 1"),
        ("consensus_ta", 3, {"min_agreement": 4}, "min_agreement 4 exceeds the 3 experts"),
        ("task_arithmetic", 2, {"scale": 0.0}, "scale 0 leaves theta_0 unchanged"),
        ("ties", 2, {"scale": 0.0}, "scale 0"),
        ("tsv_m", 2, {"scale": 0.0}, "scale 0"),
        ("iso_c", 2, {"scale": 0.0}, "scale 0"),
        ("iso_cts", 2, {"scale": 0.0}, "scale 0"),
        ("tsv_m", 3, {"rank": 0.5}, r"rank 0.5 keeps more than 1/T"),
        ("tall_ta", 2, {"lam": 1e9}, r"the model of task\(s\) t0, t1 would be theta_0 unchanged"),
    ],
)
def test_degenerate_settings_are_refused_on_every_path(method: str, count: int, settings: dict[str, object], expected: str,
                                                       tmp_path: Path) -> None:
    base, experts = _models(count)
    taus = _taus(base, experts)
    with pytest.raises(MergeflowError, match=expected):  # the API
        (mf.merge_bank if method == "tall_ta" else mf.merge)(method, base, experts, **settings)
    with pytest.raises(MergeflowError, match=expected):  # the merge@ stages' entry point, without a grid
        merge_selecting(method, taus, settings, {}, _never)
    save_file(base, tmp_path / "base.safetensors")
    paths = {}
    for name, expert in experts.items():
        paths[name] = tmp_path / f"{name}.safetensors"
        save_file(expert, paths[name])
    with pytest.raises(MergeflowError, match=expected):  # mergeflow merge: streaming, nothing written
        merge_files(method, tmp_path / "base.safetensors", paths, tmp_path / "out.safetensors", settings)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["base.safetensors", *(f"{n}.safetensors" for n in experts)])


@pytest.mark.parametrize(("method", "grid"), [("consensus_ta", {"min_agreement": [1, 2, 3]}), ("task_arithmetic", {"scale": [0.0, 0.3]})])
def test_a_degenerate_grid_candidate_is_refused_before_any_merge(method: str, grid: dict[str, list[object]]) -> None:
    base, experts = _models(2)
    with pytest.raises(MergeflowError, match=f"{method}"):
        merge_selecting(method, _taus(base, experts), {}, grid, _never)


def test_experts_equal_to_the_base_give_no_merge(tmp_path: Path) -> None:
    base, _ = _models(1)
    with pytest.raises(MergeflowError, match="the merged model would be theta_0 unchanged"):
        mf.merge("weight_averaging", base, {"a": base, "b": base})
    with pytest.raises(MergeflowError, match="emr: the model of task"):
        mf.merge_bank("emr", base, {"a": base, "b": dict(base)})


def test_a_bank_with_one_empty_task_is_refused_by_the_generic_guard() -> None:
    merged = {"w": torch.ones(2, 2)}
    bank = MaskBank(merged=merged, masks={"a": {"w": torch.ones(2, 2, dtype=torch.bool)}, "b": {"w": torch.zeros(2, 2, dtype=torch.bool)}},
                    rescalers={"a": 1.0, "b": 1.0})
    with pytest.raises(MergeflowError, match=r"task\(s\) b would be theta_0"):
        require_effect("tall_ta", bank)
    require_effect("tall_ta", MaskBank(merged=merged, masks={"a": bank.masks["a"]}, rescalers={"a": 1.0}))
    with pytest.raises(MergeflowError, match=r"task\(s\) a would be theta_0"):
        require_effect("emr", MaskBank(merged=merged, masks={"a": bank.masks["a"]}, rescalers={"a": 0.0}))


def test_meaningful_settings_still_merge() -> None:
    """The boundaries are allowed: min_agreement = T, min_agreement 0 (= TA), T = r for TSV-M, rank = 1/T, CART scale 0."""
    base, experts = _models(4)
    taus = _taus(base, experts)
    for method, settings in (("consensus_ta", {"min_agreement": 4, "lam": 0.0}), ("consensus_ta", {"min_agreement": 0}),
                             ("tsv_m", {}), ("tsv_m", {"rank": 0.25}), ("cart", {"scale": 0.0})):
        result = run_method(method, taus, settings)
        assert isinstance(result, dict) and any(value.any() for value in result.values()), (method, settings)


@pytest.mark.parametrize(("count", "settings"), [(5, {}), (3, {"rank": 0.2})])
def test_a_tsv_m_matrix_whose_rank_rounds_to_zero_is_merged_as_the_mean_with_a_warning(count: int, settings: dict[str, object]) -> None:
    """r < what T experts need (k = 0): not left at theta_0 silently (the authors' code), nor a refused merge, but the
    mean of the task vectors, as TSV-M merges its non-matrix keys."""
    base, experts = _models(count)
    taus = _taus(base, experts)
    with pytest.warns(UserWarning, match="merged as the mean of the task vectors"):
        merged = mf.merge("tsv_m", base, experts, **settings)
    mean = sum(tau["w"] for tau in taus.values()) / count
    torch.testing.assert_close(merged["w"] - base["w"], mean)
