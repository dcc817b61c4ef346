"""The registry (names, hyperparameters, --set parsing), the shared guarantees of every method, and the error messages."""

from __future__ import annotations

import math

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank, reconstruct
from mergeflow.merging.basic import task_arithmetic, weight_averaging
from mergeflow.merging.common import add_to_base
from mergeflow.merging.iso import iso_c
from mergeflow.merging.registry import get_method, method_names, parse_assignments, resolve_hyperparameters, run_method
from mergeflow.merging.tall import consensus_ta, tall_ta
from mergeflow.merging.ties import ties_merge
from mergeflow.merging.tsv import tsv_m

TABLE_NAMES = [
    "weight_averaging", "task_arithmetic", "ties", "tall_ta", "tall_ties", "consensus_ta", "emr", "tsv_m", "cart", "iso_c", "iso_cts",
]


def _task_vectors(count: int = 3, dtype: torch.dtype = torch.float32, zero: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    shapes = {
        "resblocks.0.attn.in_proj_weight": (9, 4),
        "resblocks.0.mlp.c_proj.weight": (4, 7),
        "resblocks.0.mlp.c_proj.bias": (4,),
        "conv1.weight": (2, 3, 2, 2),
        "token_embedding.weight": (6, 4),
        "logit_scale": (),
    }
    vectors = {}
    for index in range(count):
        vectors[f"task{index}"] = {
            key: torch.zeros(shape, dtype=dtype) if zero or key == "token_embedding.weight" else torch.randn(shape, generator=generator).to(dtype)
            for key, shape in shapes.items()
        }
    return vectors


def test_registry_lists_the_results_table_methods() -> None:
    assert method_names() == TABLE_NAMES
    assert get_method("emr").returns == "bank" and get_method("tall_ta").returns == "bank"
    assert get_method("consensus_ta").returns == "delta"


def test_unknown_method_names_the_known_ones() -> None:
    with pytest.raises(MergeflowError, match=r"unknown merging method 'tsvm'.*tsv_m"):
        get_method("tsvm")


def test_defaults_per_method() -> None:
    assert resolve_hyperparameters("ties") == {"k": 0.2, "aggregate": "mean", "scale": 1.0}
    assert resolve_hyperparameters("tall_ties") == {"lam": 0.4, "k": 0.2, "aggregate": "sum"}
    assert resolve_hyperparameters("consensus_ta") == {"lam": 0.4, "min_agreement": 2, "scale": 0.3}
    assert resolve_hyperparameters("cart") == {"scale": 2.0, "rank": 0.12, "svd": "exact"}
    assert resolve_hyperparameters("iso_cts") == {"scale": 1.0, "common": 0.8}
    assert resolve_hyperparameters("tsv_m") == {"scale": 1.0, "rank": None, "svd": "exact"}
    assert resolve_hyperparameters("emr") == {} and resolve_hyperparameters("weight_averaging") == {}
    assert get_method("tall_ta").hyperparameters[0].grid == (0.2, 0.3, 0.4, 0.5, 0.6)


def test_parse_assignments_converts_and_checks() -> None:
    assert parse_assignments("ties", ["k=0.3", "aggregate=sum", "scale=2"]) == {"k": 0.3, "aggregate": "sum", "scale": 2.0}
    assert parse_assignments("consensus_ta", ["min_agreement=3"]) == {"min_agreement": 3}
    assert parse_assignments("tsv_m", ["rank=none"]) == {"rank": None}
    assert resolve_hyperparameters("ties", {"k": 1})["k"] == 1.0


@pytest.mark.parametrize(
    ("method", "assignment", "message"),
    [
        ("ties", "k=1.5", r"k must be in \(0, 1\], got 1.5"),
        ("ties", "k=0", r"must be in \(0, 1\]"),
        ("ties", "k=abc", "k must be a number, got 'abc'"),
        ("ties", "k=nan", "finite number"),
        ("ties", "aggregate=max", "aggregate must be one of mean, sum"),
        ("ties", "lam=0.4", r"ties has no hyperparameter 'lam'; its hyperparameters: k, aggregate, scale"),
        ("emr", "scale=1", "emr has no hyperparameter 'scale'; its hyperparameters: none"),
        ("ties", "k", "expected key=value"),
        ("consensus_ta", "min_agreement=2.5", "min_agreement must be an integer, got '2.5'"),
        ("consensus_ta", "min_agreement=-1", "min_agreement must be an integer >= 0"),
        ("iso_cts", "common=1.2", r"common must be in \[0, 1\]"),
        ("cart", "rank=-0.1", r"rank must be in \[0, 1\]"),
        ("tall_ta", "lam=-1", "lam must be >= 0"),
    ],
)
def test_invalid_assignments_are_refused_with_a_readable_message(method: str, assignment: str, message: str) -> None:
    with pytest.raises(MergeflowError, match=message):
        parse_assignments(method, [assignment])


def test_bad_values_are_refused_by_the_functions_too() -> None:
    tvs = _task_vectors()
    with pytest.raises(MergeflowError, match=r"\(0, 1\]"):
        ties_merge(tvs, k=0.0)
    with pytest.raises(MergeflowError, match="aggregate"):
        ties_merge(tvs, aggregate="median")
    with pytest.raises(MergeflowError, match="scale must be a finite number"):
        task_arithmetic(tvs, scale=math.inf)
    with pytest.raises(MergeflowError, match="rank <= 1/T"):
        tsv_m(tvs, rank=0.5)
    with pytest.raises(MergeflowError, match="lam has no value for task"):
        tall_ta(tvs, lam={"task0": 0.3})
    with pytest.raises(MergeflowError, match="min_agreement"):
        consensus_ta(tvs, min_agreement=-1)
    with pytest.raises(MergeflowError, match="not 2-D"):
        iso_c(tvs, is_matrix=lambda key, tensor: key == "conv1.weight")
    with pytest.raises(MergeflowError, match="k must be a number, got True"):
        run_method("ties", tvs, {"k": True})


def test_run_method_applies_overrides_over_defaults() -> None:
    tvs = _task_vectors()
    delta = run_method("ties", tvs, {"k": 0.5, "aggregate": "sum"})
    direct = ties_merge(tvs, k=0.5, aggregate="sum", scale=1.0)
    assert all(torch.equal(delta[key], direct[key]) for key in direct)
    assert isinstance(run_method("emr", tvs), MaskBank)


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_every_method_keeps_inputs_intact_and_returns_fresh_tensors(name: str) -> None:
    tvs = _task_vectors()
    before = {task: {key: value.clone() for key, value in vector.items()} for task, vector in tvs.items()}
    result = run_method(name, tvs)
    outputs = [result] if isinstance(result, dict) else [result.merged, *result.masks.values()]
    input_pointers = {value.data_ptr() for vector in tvs.values() for value in vector.values()}
    assert all(value.data_ptr() not in input_pointers for output in outputs for value in output.values())
    for task, vector in tvs.items():
        assert all(torch.equal(vector[key], before[task][key]) for key in vector)
    merged = result if isinstance(result, dict) else result.merged
    assert set(merged) == set(tvs["task0"]) and all(torch.isfinite(value).all() for value in merged.values())
    assert not merged["token_embedding.weight"].any()  # an all-zero key stays exactly zero


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_all_zero_task_vectors_give_a_zero_merge_without_nan(name: str) -> None:
    """The kernels stay NaN-free on all-zero task vectors; run_method (the API, CLI and stages) refuses the theta_0
    result instead of returning it as a merge."""
    tvs = _task_vectors(zero=True)
    with pytest.raises(MergeflowError, match="theta_0 unchanged"):
        run_method(name, tvs)
    result = get_method(name).function(tvs, **resolve_hyperparameters(name))
    merged = result if isinstance(result, dict) else result.merged
    assert all(not value.any() and torch.isfinite(value).all() for value in merged.values())
    if isinstance(result, MaskBank):
        assert all(math.isfinite(value) for value in result.rescalers.values())


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_half_precision_task_vectors_come_back_in_half_precision(name: str) -> None:
    result = run_method(name, _task_vectors(dtype=torch.float16))
    merged = result if isinstance(result, dict) else result.merged
    assert all(value.dtype == torch.float16 for value in merged.values())


def test_weight_averaging_and_task_arithmetic() -> None:
    tvs = _task_vectors()
    key = "resblocks.0.mlp.c_proj.weight"
    total = sum(vector[key] for vector in tvs.values())
    assert torch.allclose(weight_averaging(tvs)[key], total / 3, atol=1e-6)
    assert torch.allclose(task_arithmetic(tvs, scale=0.3)[key], 0.3 * total, atol=1e-6)


def test_add_to_base_copies_integer_buffers_and_checks_shapes() -> None:
    base = {"w": torch.ones(2, 2), "steps": torch.tensor(5)}
    merged = add_to_base(base, {"w": torch.full((2, 2), 0.5)})
    assert torch.equal(merged["w"], torch.full((2, 2), 1.5)) and torch.equal(merged["steps"], torch.tensor(5))
    assert merged["steps"].data_ptr() != base["steps"].data_ptr()
    with pytest.raises(MergeflowError, match=r"'w' has shape \(3,\)"):
        add_to_base(base, {"w": torch.ones(3)})


def test_reconstruct_refuses_an_unknown_task() -> None:
    bank = tall_ta(_task_vectors())
    with pytest.raises(MergeflowError, match="unknown task 'cars'; the mask bank holds task0, task1, task2"):
        reconstruct({key: torch.zeros_like(value) for key, value in bank.merged.items()}, bank, "cars")


def _broken(change: str) -> dict[str, dict[str, torch.Tensor]]:
    tvs = _task_vectors()
    target = tvs["task1"]
    if change == "missing":
        del target["logit_scale"]
    elif change == "shape":
        target["resblocks.0.mlp.c_proj.bias"] = torch.zeros(5)
    elif change == "dtype":
        target["resblocks.0.mlp.c_proj.bias"] = target["resblocks.0.mlp.c_proj.bias"].double()
    elif change == "nan":
        target["resblocks.0.mlp.c_proj.bias"][1] = math.nan
    elif change == "inf":
        target["conv1.weight"][0, 0, 0, 0] = -math.inf
    return tvs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", r"task vector 'task1' has different keys from 'task0' \(missing \['logit_scale'\]"),
        ("shape", r"task vector 'task1': 'resblocks.0.mlp.c_proj.bias' has shape \(5,\), 'task0' has \(4,\)"),
        ("dtype", r"'resblocks.0.mlp.c_proj.bias' has dtype torch.float64"),
        ("nan", r"task vector 'task1': entry 'resblocks.0.mlp.c_proj.bias' contains NaN or Inf"),
        ("inf", r"entry 'conv1.weight' contains NaN or Inf"),
    ],
)
@pytest.mark.parametrize("name", ["ties", "emr", "iso_cts"])
def test_inconsistent_task_vectors_are_refused(change: str, message: str, name: str) -> None:
    with pytest.raises(MergeflowError, match=message):
        run_method(name, _broken(change))


def test_no_task_vectors_is_an_error() -> None:
    with pytest.raises(MergeflowError, match="no task vectors to merge"):
        run_method("task_arithmetic", {})
