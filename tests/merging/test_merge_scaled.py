"""Scale parts (merging/scaled.py): one merge rescaled per grid value must give the very tensors the method gives at
that scale, or a validation grid would choose among models the stage never writes."""

from __future__ import annotations

import pytest
import torch
from merge_kit import task_vectors

from mergeflow.merging.registry import METHODS, get_method, resolve_hyperparameters, run_method
from mergeflow.merging.scaled import ScaledMerge, exactly_rescalable

# Every method whose delta is offset + scale * direction; the SVD ones are why (one SVD pass instead of one per value).
RESCALABLE = ["task_arithmetic", "ties", "consensus_ta", "tsv_m", "cart", "iso_c", "iso_cts"]
# Non-default settings that take other code paths: TIES dis-sum, TSV-M's rank rule, CART keeping no component.
VARIANTS = [("task_arithmetic", {}), ("ties", {}), ("ties", {"aggregate": "sum", "k": 0.5}), ("consensus_ta", {}),
            ("tsv_m", {}), ("tsv_m", {"rank": 0.25}), ("cart", {}), ("cart", {"rank": 0.0}), ("cart", {"rank": 0.5}),
            ("iso_c", {}), ("iso_cts", {}), ("iso_cts", {"common": 0.5})]


def parts_of(method: str, vectors: dict[str, dict[str, torch.Tensor]], overrides: dict[str, object]) -> ScaledMerge:
    spec = get_method(method)
    assert spec.scale_parts is not None
    resolved = {key: value for key, value in resolve_hyperparameters(method, overrides).items() if key != "scale"}
    return spec.scale_parts(vectors, **resolved)


def test_the_rescalable_methods_are_those_whose_scale_multiplies_a_fixed_direction() -> None:
    assert [name for name, method in METHODS.items() if method.scale_parts is not None] == RESCALABLE
    for name in RESCALABLE:
        assert "scale" in resolve_hyperparameters(name)


@pytest.mark.parametrize(("method", "overrides"), VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rescaled_parts_are_the_method_at_that_scale(method: str, overrides: dict[str, object], dtype: torch.dtype) -> None:
    vectors = task_vectors(dtype)
    parts = parts_of(method, vectors, overrides)
    for scale in (0.1, 0.75, 1.0, 1.3, 2.5, -0.4):
        expected = run_method(method, vectors, {**overrides, "scale": scale})
        actual = parts.at(scale)
        assert isinstance(expected, dict) and list(actual) == list(expected)
        for key, tensor in expected.items():
            assert actual[key].dtype == tensor.dtype and torch.equal(actual[key], tensor), (method, scale, key)


def test_cart_direction_is_nonzero_so_the_scale_matters() -> None:
    """Guards the test above against a vacuous pass: CART's scale does change its matrices."""
    parts = parts_of("cart", task_vectors(), {})
    assert not torch.equal(parts.at(1.0)["resblocks.0.attn.in_proj_weight"], parts.at(2.0)["resblocks.0.attn.in_proj_weight"])
    assert "ln_1.weight" not in parts.direction  # non-matrix keys stay at the average, whatever the scale


def test_half_precision_vectors_are_not_rescaled() -> None:
    """fp16 results are cast back per key, so rescaling a rounded result would not equal rerunning the method."""
    assert exactly_rescalable(task_vectors(torch.float32)) and exactly_rescalable(task_vectors(torch.float64))
    assert not exactly_rescalable(task_vectors(torch.float16)) and not exactly_rescalable(task_vectors(torch.bfloat16))
