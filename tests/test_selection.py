"""Per-task selection on validation (TALL's lambda) and the merged-artifact format, without files or models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank, reconstruct
from mergeflow.merging.registry import run_method
from mergeflow.merging_io import load_merged, save_mask_bank, save_merged_model, task_encoder
from mergeflow.selection import describe, merge_selecting_per_task, select_per_task

# methods.md §5 (d): three task vectors, six entries each.
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
def test_bad_inputs_are_refused(tasks: list[str], grid: list[float], message: str) -> None:
    with pytest.raises(MergeflowError, match=message):
        select_per_task(tasks, grid, lambda task, value: 0.0)


def test_tall_lambda_is_chosen_per_task_and_the_bank_uses_each_choice() -> None:
    # score: prefer lambda 0.6 for task b only (any callable works; stages evaluate validation accuracy).
    def score(bank: object, task: str) -> float:
        assert isinstance(bank, MaskBank)
        return float(bank.masks["b"]["w"].sum() == 3) if task == "b" else float(bank.masks[task]["w"].sum())

    bank, selections = merge_selecting_per_task("tall_ta", TAUS, {}, {"lam": [0.4, 0.6]}, score)
    assert selections["lam"].chosen == {"a": 0.4, "b": 0.6, "c": 0.4}
    assert isinstance(bank, MaskBank)
    expected = {"a": run_method("tall_ta", TAUS, {"lam": 0.4}), "b": run_method("tall_ta", TAUS, {"lam": 0.6})}
    for task, source in (("a", "a"), ("b", "b"), ("c", "a")):
        assert torch.equal(bank.masks[task]["w"], expected[source].masks[task]["w"])
    assert bank.masks["b"]["w"].tolist() == [True, True, False, True, False, False]  # methods.md §5 (d), lambda 0.6


def test_without_grids_it_is_the_plain_method_and_never_scores() -> None:
    def never(candidate: object, task: str) -> float:
        raise AssertionError("no grid, no scoring")

    delta, selections = merge_selecting_per_task("ties", TAUS, {"k": 0.5}, {}, never)
    assert selections == {}
    assert torch.equal(delta["w"], run_method("ties", TAUS, {"k": 0.5})["w"])  # type: ignore[index]


def test_a_grid_for_a_shared_hyperparameter_is_refused() -> None:
    with pytest.raises(MergeflowError, match="one value for every task"):
        merge_selecting_per_task("ties", TAUS, {}, {"k": [0.1, 0.2]}, lambda candidate, task: 0.0)


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
