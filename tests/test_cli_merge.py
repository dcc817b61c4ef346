"""`mergeflow merge` end to end on tiny checkpoints: results equal the library, bad input gives one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mergeflow.cli import main
from mergeflow.merging.bankfile import read_mask_bank, reconstruct_task
from mergeflow.merging.registry import run_method
from mergeflow.statedict.io import load_tensors
from mergeflow.statedict.task_vectors import task_vector

TASKS = ("cars", "dtd")


@pytest.fixture()
def checkpoints(tmp_path: Path) -> dict[str, Path]:
    generator = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(4, 3, generator=generator), "b": torch.randn(3, generator=generator), "n": torch.tensor([7])}
    save_file(base, tmp_path / "base.safetensors")
    paths = {"base": tmp_path / "base.safetensors"}
    for name in TASKS:
        expert = {key: value + 0.1 * torch.randn(value.shape, generator=generator) if value.is_floating_point() else value
                  for key, value in base.items()}
        paths[name] = tmp_path / f"{name}.safetensors"
        save_file(expert, paths[name])
    return paths


def _args(paths: dict[str, Path], method: str, out: Path, *extra: str) -> list[str]:
    experts = [item for name in TASKS for item in ("--expert", f"{name}={paths[name]}")]
    return ["merge", "--method", method, "--base", str(paths["base"]), *experts, "--out", str(out), *extra]


def _outputs(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.startswith(("out", ".out")))


def test_task_arithmetic_equals_base_plus_scaled_sum(checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.safetensors"
    assert main(_args(checkpoints, "task_arithmetic", out, "--set", "scale=0.5")) == 0
    assert "wrote" in capsys.readouterr().out
    base = load_tensors(checkpoints["base"])
    experts = [load_tensors(checkpoints[name]) for name in TASKS]
    merged = load_tensors(out)
    for key in ("w", "b"):
        expected = base[key] + 0.5 * sum(expert[key] - base[key] for expert in experts)
        torch.testing.assert_close(merged[key], expected, rtol=0, atol=1e-6)
    assert torch.equal(merged["n"], base["n"])
    with safe_open(str(out), framework="pt") as handle:
        assert sorted(handle.keys()) == ["b", "n", "w"]


def test_task_flag_writes_the_reconstructed_model(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    base = load_tensors(checkpoints["base"])
    vectors = {name: task_vector(load_tensors(checkpoints[name]), base, name) for name in TASKS}
    bank = run_method("tall_ta", vectors, {"lam": 0.3})
    task_out, bank_out = tmp_path / "out_task.safetensors", tmp_path / "out_bank.safetensors"
    assert main(_args(checkpoints, "tall_ta", task_out, "--set", "lam=0.3", "--task", "dtd")) == 0
    assert main(_args(checkpoints, "tall_ta", bank_out, "--set", "lam=0.3")) == 0
    expected = reconstruct_task(base, bank, "dtd")
    got = load_tensors(task_out)
    assert all(torch.equal(got[key], expected[key]) for key in base)
    stored = read_mask_bank(bank_out)
    assert stored.tasks == list(TASKS) and all(torch.equal(stored.merged[key], bank.merged[key]) for key in bank.merged)


def _corrupt(checkpoints: dict[str, Path], kind: str) -> None:
    path = checkpoints["dtd"]
    tensors = load_tensors(path) if kind != "corrupt" else {}
    if kind == "shape":
        tensors["w"] = torch.zeros(3, 4)
    elif kind == "nan":
        tensors["w"][1, 1] = float("nan")  # "w" is written after "b": the error strikes mid-output
    elif kind == "missing":
        path.unlink()
        return
    elif kind == "corrupt":
        path.write_bytes(b"\xff\x00\x00\x00\x00\x00\x00\x00garbage")
        return
    save_file(tensors, path)


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    [
        ("method", [], "unknown merging method 'magic'"),
        ("set_key", ["--set", "alpha=1"], "ties has no hyperparameter 'alpha'"),
        ("set_value", ["--set", "k=1.5"], "k must be in (0, 1]"),
        ("set_type", ["--set", "k=abc"], "k must be a number"),
        ("task_on_delta", ["--task", "dtd"], "--task applies to mask-bank methods"),
        ("shape", [], "'w' has shape (3, 4)"),
        ("nan", [], "'w' contains NaN or Inf"),
        ("missing", [], "no such file"),
        ("corrupt", [], "not a readable safetensors file"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_output(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, extra: list[str], message: str
) -> None:
    if case in ("shape", "nan", "missing", "corrupt"):
        _corrupt(checkpoints, case)
    out = tmp_path / "out.safetensors"
    method = {"method": "magic", "nan": "task_arithmetic"}.get(case, "ties")
    assert main(_args(checkpoints, method, out, *extra)) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error
    assert _outputs(tmp_path) == []


def test_unknown_task_and_bad_expert_syntax(checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.safetensors"
    assert main(_args(checkpoints, "emr", out, "--task", "svhn")) == 2
    assert "unknown task 'svhn'" in capsys.readouterr().err
    assert main(["merge", "--method", "emr", "--base", str(checkpoints["base"]), "--expert", "nameless", "--out", str(out)]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert _outputs(tmp_path) == []


def test_help_lists_every_method_with_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["merge", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for fragment in ("ties:", "tall_ties:", "emr:", "iso_cts:", "k [0.2]", "aggregate [mean]", "lam [0.4]", "rank [none]", "common [0.8]"):
        assert fragment in text


def test_missing_arguments_are_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["merge", "--method", "ties"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_out_may_not_overwrite_an_input(checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    before = checkpoints["cars"].read_bytes()
    assert main(_args(checkpoints, "task_arithmetic", checkpoints["cars"])) == 2
    assert "is one of the input checkpoints" in capsys.readouterr().err
    assert checkpoints["cars"].read_bytes() == before
