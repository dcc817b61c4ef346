"""Streaming merges equal the in-memory methods bit for bit; the file formats round-trip through safetensors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank, reconstruct
from mergeflow.merging.bankfile import MaskBankFile, read_mask_bank, reconstruct_task, write_mask_bank
from mergeflow.merging.common import add_to_base
from mergeflow.merging.registry import METHODS, run_method
from mergeflow.merging.streaming import merge_files
from mergeflow.merging.topk import magnitude_threshold, streamed_magnitude_thresholds
from mergeflow.statedict.bitpack import pack_bits, unpack_bits
from mergeflow.statedict.io import load_tensors
from mergeflow.statedict.lazy import LazySafetensors, check_compatible_files
from mergeflow.statedict.task_vectors import task_vector
from mergeflow.statedict.writer import SafetensorsWriter

TASKS = ("alpha", "beta", "gamma")
# Non-default values where they matter, so the streamed statistics are exercised away from the defaults.
OVERRIDES: dict[str, dict[str, object]] = {"ties": {"k": 0.3}, "tall_ties": {"k": 0.35, "lam": 0.5}, "tsv_m": {"rank": 1 / 3}}  # int(r / 3) >= 1 for every matrix (r >= 3)


def _models(dtype: torch.dtype, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """A base and three experts: wide and tall matrices, a 1-D key, an all-zero task-vector key, an int buffer."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {
        "visual.attn.in_proj_weight": (6, 11),  # wide
        "visual.mlp.c_fc.weight": (13, 5),  # tall
        "visual.ln_1.bias": (7,),
        "visual.attn.out_proj.weight": (4, 4),  # its task vectors are all zero
        "visual.proj": (9, 3),
    }
    base = {key: torch.randn(shape, generator=generator).to(dtype) for key, shape in shapes.items()}
    base["visual.steps"] = torch.tensor([3, 1], dtype=torch.int64)
    experts = {}
    for index, name in enumerate(TASKS):
        expert = {key: value.clone() for key, value in base.items()}
        for key in shapes:
            if key != "visual.attn.out_proj.weight":
                noise = 0.1 * torch.randn(shapes[key], generator=generator)
                if index == 2:
                    noise = noise.round(decimals=1)  # ties in |tau| and exact zeros
                expert[key] = (base[key].float() + noise).to(dtype)
        experts[name] = expert
    return base, experts


def _write(tmp_path: Path, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]], Path, dict[str, Path]]:
    base, experts = _models(dtype)
    save_file(base, tmp_path / "base.safetensors")
    paths = {}
    for name, expert in experts.items():
        paths[name] = tmp_path / f"{name}.safetensors"
        save_file(expert, paths[name])
    return base, experts, tmp_path / "base.safetensors", paths


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_streaming_equals_in_memory_for_every_method(tmp_path: Path, dtype: torch.dtype) -> None:
    base, experts, base_path, paths = _write(tmp_path, dtype)
    task_vectors = {name: task_vector(expert, base, name) for name, expert in experts.items()}
    for name, method in METHODS.items():
        overrides = OVERRIDES.get(name, {})
        expected = run_method(name, task_vectors, overrides)
        out = tmp_path / f"{name}.out.safetensors"
        summary = merge_files(name, base_path, paths, out, overrides)
        if method.returns == "delta":
            assert summary.output == "model"
            merged, model = add_to_base(base, expected), load_tensors(out)  # type: ignore[arg-type]
            assert list(model) == list(base) or set(model) == set(base)
            for key in base:
                assert model[key].dtype == base[key].dtype
                assert torch.equal(model[key], merged[key]), (name, key)
            continue
        assert isinstance(expected, MaskBank) and summary.output == "bank"
        bank = read_mask_bank(out)
        assert bank.tasks == list(TASKS) and bank.rescalers == expected.rescalers, name
        for key, value in expected.merged.items():
            assert torch.equal(bank.merged[key], value), (name, key)
            for task in TASKS:
                assert torch.equal(bank.masks[task][key], expected.masks[task][key]), (name, task, key)
        task = TASKS[1]
        task_out = tmp_path / f"{name}.{task}.safetensors"
        assert merge_files(name, base_path, paths, task_out, overrides, task=task).output == "task"
        want, got = reconstruct(base, expected, task), load_tensors(task_out)
        assert all(torch.equal(got[key], want[key]) for key in base), name
        from_file = reconstruct_task(base, out, task)
        assert all(torch.equal(from_file[key], want[key]) for key in base), name


def test_streamed_thresholds_equal_global_kthvalue() -> None:
    generator = torch.Generator().manual_seed(1)
    sizes = [0, 1, 37, 200, 5]
    for dtype in (torch.float32, torch.float16, torch.float64):
        vectors = [{f"k{i}": (torch.randn(n, generator=generator) * 10.0 ** (i - 2)).to(dtype) for i, n in enumerate(sizes)} for _ in range(3)]
        vectors[1] = {key: torch.zeros_like(value) for key, value in vectors[1].items()}
        vectors[2] = {key: value.round() for key, value in vectors[2].items()}
        keys = list(vectors[0])
        wide = torch.float64 if dtype == torch.float64 else torch.float32
        for keep in (0.001, 0.2, 0.5, 0.97, 1.0):
            want = [magnitude_threshold([vector[key] for key in keys], keep) for vector in vectors]
            got = streamed_magnitude_thresholds(keys, lambda key, vectors=vectors: [vector[key] for vector in vectors], 3, wide, keep)
            for expected, actual in zip(want, got, strict=True):
                assert (expected is None and actual is None) or (
                    expected is not None and actual is not None and actual.dtype == expected.dtype and torch.equal(actual, expected)
                )


@pytest.mark.parametrize("shape", [(0,), (1,), (8,), (3, 5), (2, 3, 7)])
def test_bitpack_round_trip_matches_numpy_packbits(shape: tuple[int, ...]) -> None:
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(2)) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == (mask.numel() + 7) // 8
    assert np.array_equal(packed.numpy(), np.packbits(mask.numpy().reshape(-1)))
    assert torch.equal(unpack_bits(packed, shape), mask)
    with pytest.raises(MergeflowError):
        unpack_bits(packed, (mask.numel() + 9,))


def test_writer_output_is_read_by_safe_open(tmp_path: Path) -> None:
    tensors = {
        "b": torch.randn(3, 4).half(),
        "a": torch.arange(5),
        "c": torch.randn(2, 2, dtype=torch.bfloat16),
        "e": torch.zeros(0, 3),
        "m": torch.tensor([True, False, True]),
        "d": torch.randn(2, dtype=torch.float64),
    }
    path = tmp_path / "w.safetensors"
    with SafetensorsWriter(path, [(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()], {"x": "1"}, metadata_reserve=64) as writer:
        for key in reversed(list(tensors)):  # any order
            writer.write(key, tensors[key])
        writer.set_metadata({"x": "2", "late": "known at the end"})
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"x": "2", "late": "known at the end"}
        assert all(torch.equal(handle.get_tensor(key), value) for key, value in tensors.items())
    header_size = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert header_size % 8 == 0
    assert json.loads(path.read_bytes()[8 : 8 + header_size])["a"]["data_offsets"][1] - json.loads(
        path.read_bytes()[8 : 8 + header_size]
    )["a"]["data_offsets"][0] == 5 * 8


def test_writer_leaves_nothing_behind_on_error(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    with pytest.raises(MergeflowError, match="NaN or Inf"):
        with SafetensorsWriter(path, [("a", torch.float32, (2,))]) as writer:
            writer.write("a", torch.tensor([1.0, float("nan")]))
    with pytest.raises(MergeflowError, match="never written"):
        with SafetensorsWriter(path, [("a", torch.float32, (2,)), ("b", torch.float32, (1,))]) as writer:
            writer.write("a", torch.ones(2))
    assert list(tmp_path.iterdir()) == []


def test_lazy_file_reads_headers_and_refuses_mismatches(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2, 3), "n": torch.tensor([1])}, tmp_path / "base.safetensors")
    save_file({"w": torch.zeros(3, 2), "n": torch.tensor([1])}, tmp_path / "shape.safetensors")
    save_file({"w": torch.zeros(2, 3, dtype=torch.float16), "n": torch.tensor([1])}, tmp_path / "dtype.safetensors")
    save_file({"w": torch.zeros(2, 3)}, tmp_path / "keys.safetensors")
    save_file({"w": torch.full((2, 3), float("inf")), "n": torch.tensor([1])}, tmp_path / "inf.safetensors")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    base = LazySafetensors(tmp_path / "base.safetensors")
    assert base.keys == ["n", "w"] and base.shape("w") == (2, 3) and base.dtype("w") == torch.float32
    for name, message in (("shape", "shape"), ("dtype", "dtype"), ("keys", "missing")):
        with pytest.raises(MergeflowError, match=rf"{name}\.safetensors.*{message}"):
            check_compatible_files(base, {name: LazySafetensors(tmp_path / f"{name}.safetensors")})
    check_compatible_files(base, {"inf": LazySafetensors(tmp_path / "inf.safetensors")})  # headers agree
    with pytest.raises(MergeflowError, match="'w' contains NaN or Inf"):
        LazySafetensors(tmp_path / "inf.safetensors").get("w")
    with pytest.raises(MergeflowError, match="not a readable safetensors"):
        LazySafetensors(tmp_path / "corrupt.safetensors")
    with pytest.raises(MergeflowError, match="no such file"):
        LazySafetensors(tmp_path / "absent.safetensors")


def test_bank_file_round_trip_and_task_reconstruction(tmp_path: Path) -> None:
    base, experts = _models(torch.float32, seed=3)
    task_vectors = {name: task_vector(expert, base, name) for name, expert in experts.items()}
    bank = run_method("emr", task_vectors)
    assert isinstance(bank, MaskBank)
    path = tmp_path / "bank.safetensors"
    write_mask_bank(path, bank, method="emr", hyperparameters={})
    opened = MaskBankFile(path)
    assert opened.tasks == list(TASKS) and opened.rescalers == bank.rescalers and opened.method == "emr"
    loaded = opened.load()
    for key in bank.merged:
        assert torch.equal(loaded.merged[key], bank.merged[key])
        assert all(torch.equal(loaded.masks[task][key], bank.masks[task][key]) for task in TASKS)
    for task in TASKS:
        want = reconstruct(base, bank, task)
        for source in (bank, opened, path):
            got = reconstruct_task(base, source, task)
            assert all(torch.equal(got[key], want[key]) for key in base)
    with pytest.raises(MergeflowError, match="unknown task"):
        reconstruct_task(base, opened, "delta")
    packed_bytes = sum(opened.file.numel(key) for key in opened.file.keys if key.startswith("mask/"))
    assert packed_bytes == sum((bank.masks[TASKS[0]][key].numel() + 7) // 8 for key in bank.merged) * len(TASKS)


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "tall_ta", "tall_ties", "consensus_ta", "emr"])
def test_chunked_kernels_equal_whole_key_kernels(method: str) -> None:
    """Element-wise plans run in column chunks (``MergePlan.apply``); on keys spanning several chunks (and a
    ragged last one) the result must equal the kernel applied to the whole key, bit for bit."""
    from mergeflow.merging.plan import CHUNK, InMemoryVectors
    from mergeflow.merging.registry import get_method, resolve_hyperparameters

    generator = torch.Generator().manual_seed(3)
    shapes = {"visual.big": (3, CHUNK + 17), "visual.small": (5,)}
    vectors = {
        name: {key: (0.01 * torch.randn(shape, generator=generator)).round(decimals=3) for key, shape in shapes.items()}
        for name in TASKS
    }
    source = InMemoryVectors(vectors)
    plan = get_method(method).plan(source, **resolve_hyperparameters(method, {}))  # type: ignore[misc]
    assert plan.elementwise
    for key in source.keys:
        chunked, whole = plan.apply(key, source.tensors(key)), plan.kernel(key, source.tensors(key))
        assert torch.equal(chunked.merged, whole.merged)
        assert chunked.merged.shape == whole.merged.shape
        for mask_chunked, mask_whole in zip(chunked.masks or (), whole.masks or (), strict=True):
            assert torch.equal(mask_chunked, mask_whole)


def test_trim_rows_equals_the_masked_comparison() -> None:
    """The float-only trim keeps exactly |x| >= threshold (ties at the threshold kept, zeros dropped or kept as
    zeros), also when a threshold has a wider dtype than the rows (the comparison fallback) or is absent."""
    from mergeflow.merging.common import masked
    from mergeflow.merging.topk import above_threshold, trim_rows

    stack = torch.tensor([[0.5, -0.25, 0.0, -0.5, 0.125], [1.0, -1.0, 0.3, 0.0, -0.7], [0.2, 0.1, -0.3, 0.4, 0.0]])
    thresholds = [torch.tensor(0.25), torch.tensor(0.3, dtype=torch.float64), None]
    expected = masked(stack, torch.stack([above_threshold(row, threshold) for row, threshold in zip(stack, thresholds, strict=True)]))
    trimmed = trim_rows(stack, thresholds)
    assert torch.equal(trimmed, expected)
    assert trimmed[0].tolist() == [0.5, -0.25, 0.0, -0.5, 0.0]  # the tie at 0.25 is kept


def test_packed_bank_in_memory_rebuilds_every_task_like_the_unpacked_bank(tmp_path: Path) -> None:
    """What a routed server holds (masks still packed) gives each task the same delta as the unpacked MaskBank,
    rescalers included (EMR), and counts its bytes as one shared vector plus T/8 bytes a parameter."""
    from mergeflow.merging.bank import task_delta

    base, experts = _models(torch.float32)
    vectors = {name: task_vector(base, expert) for name, expert in experts.items()}
    bank = run_method("emr", vectors)
    assert isinstance(bank, MaskBank)
    write_mask_bank(tmp_path / "bank.safetensors", bank)
    packed = MaskBankFile(tmp_path / "bank.safetensors").load_packed()
    for index, name in enumerate(bank.tasks):
        expected = task_delta(bank, name)
        got = packed.task_delta(index)
        assert set(got) == set(expected) and all(torch.equal(got[key], expected[key]) for key in expected)
    shared = sum(value.numel() * 4 for value in bank.merged.values())
    packed_bytes = sum((value.numel() + 7) // 8 for value in bank.merged.values()) * len(bank.tasks)
    assert packed.nbytes == shared + packed_bytes
    with pytest.raises(MergeflowError, match="out of range"):
        packed.task_delta(len(bank.tasks))
