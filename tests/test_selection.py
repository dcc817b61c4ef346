"""Selection on validation (TALL's per-task lambda, one shared scale or lambda elsewhere) and the merged-artifact
format, without files or models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from merge_kit import task_vectors

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank, reconstruct
from mergeflow.merging.registry import run_method
from mergeflow.merging_io import load_merged, save_mask_bank, save_merged_model, task_encoder
from mergeflow.selection import SharedSelection, describe, merge_selecting, select_per_task, select_shared

# docs/methods.md §5 (d): three task vectors, six entries each.
TAUS = {
    "a": {"w": torch.tensor([0.5, -0.2, 0.0, 0.3, -0.1, 0.05])},
    "b": {"w": torch.tensor([-0.4, -0.3, 0.0, 0.1, 0.2, 0.0])},
    "c": {"w": torch.tensor([0.1, 0.6, 0.0, -0.2, -0.3, 0.0])},
}


def test_each_task_gets_its_own_best_value() -> None:
    best = {"a": 0.2, "b": 0.6, "c": 0.4}
    selection = select_per_task(list(best), [0.2, 0.4, 0.6], lambda task, value: -abs(value - best[task]))
    assert selection.chosen == best
    assert selection.scores["b"] == pytest.approx({0.2: -0.4, 0.4: -0.2, 0.6: 0.0})
    assert describe(selection, "lam")[1].startswith("b: lam = 0.6 (validation 0.2: -0.4000")


def test_ties_go_to_the_earlier_grid_value_and_the_grid_is_the_outer_loop() -> None:
    calls: list[tuple[str, float]] = []

    def score(task: str, value: float) -> float:
        calls.append((task, value))
        return 1.0

    selection = select_per_task(["a", "b"], [0.5, 0.3], score)
    assert selection.chosen == {"a": 0.5, "b": 0.5}
    assert calls == [("a", 0.5), ("b", 0.5), ("a", 0.3), ("b", 0.3)]


@pytest.mark.parametrize(("tasks", "grid", "message"), [([], [0.2], "no tasks"), (["a"], [], "empty grid"),
                                                        (["a"], [0.2, 0.2], "duplicate")])
@pytest.mark.parametrize("select", [select_per_task, select_shared])
def test_bad_inputs_are_refused(tasks: list[str], grid: list[float], message: str, select) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MergeflowError, match=message):
        select(tasks, grid, lambda task, value: 0.0)


def test_a_shared_value_is_the_best_mean_not_a_vote() -> None:
    # a prefers 0.2 by a lot, b and c prefer 0.6 by a little: the mean picks 0.2, a per-task majority would pick 0.6.
    table = {"a": {0.2: 0.9, 0.6: 0.3}, "b": {0.2: 0.5, 0.6: 0.6}, "c": {0.2: 0.5, 0.6: 0.6}}
    selection = select_shared(list(table), [0.2, 0.6], lambda task, value: table[task][value])
    assert selection.chosen == 0.2 and selection.scores == table
    assert selection.averages == pytest.approx({0.2: 1.9 / 3, 0.6: 1.5 / 3})
    assert describe(selection, "scale")[0] == "scale = 0.2 for every task (mean validation 0.2: 0.6333, 0.6: 0.5000)"
    assert describe(selection, "scale")[1] == "a: validation 0.2: 0.9000, 0.6: 0.3000"


def test_a_shared_tie_goes_to_the_earlier_grid_value_and_the_grid_is_the_outer_loop() -> None:
    calls: list[tuple[str, float]] = []

    def score(task: str, value: float) -> float:
        calls.append((task, value))
        return {"a": 1.0, "b": 0.0}[task] if value == 0.5 else {"a": 0.0, "b": 1.0}[task]

    assert select_shared(["a", "b"], [0.5, 0.3], score).chosen == 0.5
    assert calls == [("a", 0.5), ("b", 0.5), ("a", 0.3), ("b", 0.3)]


def test_tall_lambda_is_chosen_per_task_and_the_bank_uses_each_choice() -> None:
    # score: prefer lambda 0.6 for task b only (any callable works; stages evaluate validation accuracy).
    def score(bank: object, task: str) -> float:
        assert isinstance(bank, MaskBank)
        return float(bank.masks["b"]["w"].sum() == 3) if task == "b" else float(bank.masks[task]["w"].sum())

    bank, selections = merge_selecting("tall_ta", TAUS, {}, {"lam": [0.4, 0.6]}, score)
    assert selections["lam"].chosen == {"a": 0.4, "b": 0.6, "c": 0.4}
    assert isinstance(bank, MaskBank)
    expected = {"a": run_method("tall_ta", TAUS, {"lam": 0.4}), "b": run_method("tall_ta", TAUS, {"lam": 0.6})}
    for task, source in (("a", "a"), ("b", "b"), ("c", "a")):
        assert torch.equal(bank.masks[task]["w"], expected[source].masks[task]["w"])
    assert bank.masks["b"]["w"].tolist() == [True, True, False, True, False, False]  # docs/methods.md §5 (d), lambda 0.6


def test_without_grids_it_is_the_plain_method_and_never_scores() -> None:
    def never(candidate: object, task: str) -> float:
        raise AssertionError("no grid, no scoring")

    delta, selections = merge_selecting("ties", TAUS, {"k": 0.5}, {}, never)
    assert selections == {}
    assert torch.equal(delta["w"], run_method("ties", TAUS, {"k": 0.5})["w"])  # type: ignore[index]


def _prefer(target: dict[str, torch.Tensor], key: str):  # type: ignore[no-untyped-def]
    """A scorer whose best candidate is the one closest to ``target`` at ``key`` (stands in for validation accuracy)."""
    def score(candidate: object, task: str) -> float:
        assert isinstance(candidate, dict)
        return -float((candidate[key] - target[key]).norm())
    return score


@pytest.mark.parametrize(("method", "dtype", "merges"), [("tsv_m", torch.float32, 1), ("cart", torch.float64, 1),
                                                       ("iso_cts", torch.float32, 1), ("tsv_m", torch.float16, 4)])
def test_a_scale_grid_is_one_svd_merge_rescaled_and_gives_the_method_at_each_value(
    method: str, dtype: torch.dtype, merges: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors, key = task_vectors(dtype), "resblocks.0.attn.in_proj_weight"
    target = run_method(method, vectors, {"scale": 1.25})
    svd_calls = 0
    real_svd = torch.linalg.svd

    def counted_svd(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal svd_calls
        svd_calls += 1
        return real_svd(*args, **kwargs)

    seen: dict[int, object] = {}
    scorer = _prefer(target, key)  # type: ignore[arg-type]

    def score(candidate: object, task: str) -> float:
        seen[id(candidate)] = candidate
        return scorer(candidate, task)

    monkeypatch.setattr(torch.linalg, "svd", counted_svd)
    run_method(method, vectors, {"scale": 1.0})
    one_merge, svd_calls = svd_calls, 0
    delta, selections = merge_selecting(method, vectors, {}, {"scale": [0.5, 1.25, 2.0]}, score)
    assert svd_calls == merges * one_merge  # fp16 cannot be rescaled exactly: one merge per value, then the chosen
    selection = selections["scale"]
    assert isinstance(selection, SharedSelection) and selection.chosen == 1.25
    assert set(selection.scores) == set(vectors) and list(selection.averages) == [0.5, 1.25, 2.0]
    monkeypatch.undo()
    assert isinstance(delta, dict) and list(delta) == list(target)  # type: ignore[arg-type]
    assert all(torch.equal(delta[k], target[k]) for k in target)  # type: ignore[index]
    assert len(seen) >= 1


def test_a_shared_lambda_remerges_per_value_and_keeps_the_chosen_one() -> None:
    vectors, key = task_vectors(), "resblocks.0.mlp.c_fc.weight"
    target = run_method("consensus_ta", vectors, {"lam": 0.6})
    delta, selections = merge_selecting("consensus_ta", vectors, {"min_agreement": 2}, {"lam": [0.2, 0.4, 0.6]},
                                        _prefer(target, key))  # type: ignore[arg-type]
    selection = selections["lam"]
    assert isinstance(selection, SharedSelection) and selection.chosen == 0.6
    assert all(torch.equal(delta[k], target[k]) for k in target)  # type: ignore[index]


@pytest.mark.parametrize(("fixed", "grids", "message"), [
    ({"scale": 1.0}, {"scale": [0.5, 1.0]}, "ties: give scale or scale_grid, not both"),
    ({}, {"scale": [0.5], "k": [0.1, 0.2]}, "ties: one grid at a time, got scale_grid, k_grid"),
    ({}, {"scale": []}, "empty grid"),
    ({}, {"scale": [0.5, 0.5]}, "duplicate"),
])
def test_bad_grids_are_refused(fixed: dict[str, float], grids: dict[str, list[float]], message: str) -> None:
    with pytest.raises(MergeflowError, match=message):
        merge_selecting("ties", TAUS, fixed, grids, lambda candidate, task: 0.0)


def test_mask_bank_and_model_round_trip(tmp_path: Path) -> None:
    base = {"w": torch.zeros(6), "step": torch.tensor(3)}
    bank = run_method("emr", TAUS)
    assert isinstance(bank, MaskBank)
    save_mask_bank(tmp_path / "emr.safetensors", bank, "emr", {"hyperparameters": {}})
    loaded, metadata = load_merged(tmp_path / "emr.safetensors")
    assert isinstance(loaded, MaskBank) and metadata == {"method": "emr", "info": {"hyperparameters": {}}}
    assert loaded.tasks == ["a", "b", "c"] and loaded.rescalers == pytest.approx(bank.rescalers)
    for task in TAUS:
        assert torch.equal(task_encoder(loaded, base, task)["w"], reconstruct(base, bank, task)["w"])
        assert loaded.masks[task]["w"].dtype == torch.bool

    model = {"w": torch.arange(6.0), "step": torch.tensor(3)}
    save_merged_model(tmp_path / "ta.safetensors", model, "task_arithmetic", {"hyperparameters": {"scale": 0.3}})
    state, metadata = load_merged(tmp_path / "ta.safetensors")
    assert metadata["info"]["hyperparameters"] == {"scale": 0.3}
    assert torch.equal(task_encoder(state, base, "a")["w"], model["w"])


def test_a_foreign_safetensors_file_is_refused(tmp_path: Path) -> None:
    from mergeflow.statedict.io import save_tensors

    save_tensors(tmp_path / "x.safetensors", {"w": torch.zeros(2)})
    with pytest.raises(MergeflowError, match="not a mergeflow merged artifact"):
        load_merged(tmp_path / "x.safetensors")
