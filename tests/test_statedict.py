"""Task-vector arithmetic and safetensors I/O: exact, strict about mismatches, never leaving partial files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mergeflow.atomic import atomic_path
from mergeflow.errors import MergeflowError
from mergeflow.statedict.io import check_finite, load_tensors, read_safetensors, save_tensors
from mergeflow.statedict.subdict import visual_state_dict
from mergeflow.statedict.task_vectors import apply_task_vector, task_vector


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(4, 3, generator=g),
        "b": torch.randn(3, generator=g),
        "half": torch.randn(2, generator=g).half(),
        "num_batches_tracked": torch.tensor(seed, dtype=torch.int64),
    }


def test_task_vector_is_expert_minus_base_and_skips_integer_buffers() -> None:
    base, expert = _state(0), _state(1)
    tau = task_vector(expert, base)
    assert set(tau) == {"w", "b", "half"}
    assert torch.equal(tau["w"], expert["w"] - base["w"])
    assert tau["half"].dtype == torch.float16
    rebuilt = apply_task_vector(base, tau)
    assert torch.allclose(rebuilt["w"], expert["w"], atol=1e-6)
    assert torch.equal(rebuilt["num_batches_tracked"], base["num_batches_tracked"])
    assert torch.allclose(apply_task_vector(base, tau, 0.5)["b"], base["b"] + 0.5 * tau["b"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("w"), "missing"),
        (lambda s: s.__setitem__("extra", torch.zeros(1)), "unexpected"),
        (lambda s: s.__setitem__("w", torch.zeros(3, 4)), "shape"),
        (lambda s: s.__setitem__("b", s["b"].double()), "dtype"),
    ],
)
def test_mismatched_experts_are_refused(change, message: str) -> None:  # type: ignore[no-untyped-def]
    expert = _state(1)
    change(expert)
    with pytest.raises(MergeflowError, match=message):
        task_vector(expert, _state(0), "expert.safetensors")


def test_safetensors_round_trip_and_bad_files(tmp_path: Path) -> None:
    state = _state(3)
    save_tensors(tmp_path / "m.safetensors", state, metadata={"task": "x"})
    loaded, meta = read_safetensors(tmp_path / "m.safetensors")
    assert meta == {"task": "x"} and all(torch.equal(loaded[k], v) for k, v in state.items())
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(MergeflowError, match="not a readable safetensors"):
        load_tensors(tmp_path / "corrupt.safetensors")
    with pytest.raises(MergeflowError, match="no such file"):
        load_tensors(tmp_path / "absent.safetensors")


def test_nan_weights_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    state = _state(0)
    state["w"][0, 0] = float("nan")
    with pytest.raises(MergeflowError, match="'w' contains NaN"):
        save_tensors(tmp_path / "nan.safetensors", state)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize(("values", "finite"), [
    ([1.0, -2.0], True),
    ("max", True),  # finite entries whose sum overflows: the fast check fails, the exact one must accept them
    ([1.0, float("nan")], False), ([1.0, float("inf")], False), ([float("-inf"), 1.0], False),
    ([float("inf"), float("-inf")], False),
])
def test_check_finite_is_exact(dtype: torch.dtype, values: list[float] | str, finite: bool) -> None:
    big = torch.finfo(dtype).max
    tensor = torch.tensor([big, big], dtype=dtype) if values == "max" else torch.tensor(values, dtype=dtype)
    if finite:
        check_finite({"w": tensor}, "x")
    else:
        with pytest.raises(MergeflowError, match="'w' contains NaN or Inf"):
            check_finite({"w": tensor}, "x")


def test_apply_task_vector_has_the_bits_of_base_plus_scaled_tau() -> None:
    base, tau = _state(0), task_vector(_state(1), _state(0))
    applied = apply_task_vector(base, tau, 0.37)
    for key, value in tau.items():
        assert torch.equal(applied[key], base[key] + 0.37 * value), key
        assert applied[key].data_ptr() not in (base[key].data_ptr(), value.data_ptr())  # inputs untouched


def test_atomic_path_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_visual_sub_dict() -> None:
    state = {"visual.conv1.weight": torch.ones(1), "token_embedding.weight": torch.ones(1)}
    assert list(visual_state_dict(state)) == ["conv1.weight"]
    with pytest.raises(MergeflowError, match="visual"):
        visual_state_dict({"token_embedding.weight": torch.ones(1)})


def test_unpack_bits_as_float_equals_the_bool_mask() -> None:
    """The float unpacking used by routed serving is the bool mask as 0/1 (ragged last byte included)."""
    from mergeflow.statedict.bitpack import pack_bits, unpack_bits, unpack_bits_as

    generator = torch.Generator().manual_seed(0)
    for shape in [(1,), (13,), (3, 7), (2, 3, 5)]:
        mask = torch.rand(shape, generator=generator) < 0.4
        packed = pack_bits(mask)
        assert torch.equal(unpack_bits_as(packed, shape, torch.float32), unpack_bits(packed, shape).to(torch.float32))


def test_saved_files_are_byte_identical_across_processes(tmp_path: Path) -> None:
    """safetensors orders metadata by a per-process hash: without the canonical header DVC saw new hashes each run."""
    import hashlib
    import subprocess
    import sys

    code = ("import sys, torch; from mergeflow.statedict.io import save_tensors; save_tensors(sys.argv[1], "
            "{'w': torch.ones(3), 'b': torch.arange(4)}, metadata={'task': 't', 'classes': 'a|b', 'kind': 'k', 'z': '1'})")
    digests = set()
    for index in range(3):
        path = tmp_path / f"{index}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(path)], check=True)
        digests.add(hashlib.md5(path.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_frozen_keys_leave_the_task_vector_and_mistakes_are_refused() -> None:
    from mergeflow.statedict.task_vectors import without_frozen

    tau = {"roberta.embeddings.word_embeddings.weight": torch.ones(3, 2), "roberta.encoder.layer.0.dense.weight": torch.ones(2, 2)}
    assert set(without_frozen(tau, [r"roberta\.embeddings\..*"])) == {"roberta.encoder.layer.0.dense.weight"}
    with pytest.raises(MergeflowError, match="match no task-vector key"):
        without_frozen(tau, [r"transformer\.wte\..*"])
    with pytest.raises(MergeflowError, match="every merge would be theta_0"):
        without_frozen(tau, [r"roberta\..*"])
    with pytest.raises(MergeflowError, match="is not a regular expression"):
        without_frozen(tau, ["(["])
