"""`mergeflow adapt` on checkpoints, heads and unlabelled inputs a test makes: it equals the API, and bad input gets
one line and no file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mergeflow as mf
from mergeflow.adaptation.batches import batch_sampler
from mergeflow.cli import main
from mergeflow.models.backbone import create_clip

TASKS = ("digits", "signs", "textures")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("adapt")
    torch.manual_seed(0)
    encoder = create_clip("mf-vit-tiny").visual
    base = {key: value.detach().clone() for key, value in encoder.state_dict().items()}
    paths = {"base": folder / "base.safetensors", "heads": folder / "heads.safetensors", "inputs": folder / "inputs.safetensors"}
    mf.save_checkpoint(base, paths["base"])
    for task in TASKS:
        expert = {key: value + 0.02 * torch.randn_like(value) if value.is_floating_point() else value for key, value in base.items()}
        paths[task] = folder / f"{task}.safetensors"
        mf.save_checkpoint(expert, paths[task])
    mf.save_checkpoint({task: torch.nn.functional.normalize(torch.randn(4, 128), dim=-1) for task in TASKS}, paths["heads"])
    mf.save_checkpoint({task: torch.randn(12, 3, 32, 32) for task in TASKS}, paths["inputs"])
    return paths


def _argv(files: dict[str, Path], out: Path, *extra: str, tasks: tuple[str, ...] = TASKS) -> list[str]:
    argv = ["adapt", "--model", "mf-vit-tiny", "--base", str(files["base"]), "--heads", str(files["heads"]),
            "--inputs", str(files["inputs"]), "--out", str(out), "--steps", "3", "--batch-size", "4"]
    return argv + [f"--expert={task}={files[task]}" for task in tasks] + list(extra)


@pytest.mark.parametrize(("method", "prior"), [("adamerging", "0.3"), ("adarank_ta", "0.3"), ("adarank_cart", "2.3")])
def test_the_cli_writes_the_apis_final_step(files: dict[str, Path], tmp_path: Path, method: str, prior: str) -> None:
    out = tmp_path / "adapted.safetensors"
    assert main(_argv(files, out, "--method", method, "--prior", prior)) == 0
    written = mf.load_checkpoint(out)
    base = mf.load_checkpoint(files["base"])
    experts = {task: mf.load_checkpoint(files[task]) for task in TASKS}
    heads, inputs = mf.load_checkpoint(files["heads"]), mf.load_checkpoint(files["inputs"])
    encoder = create_clip("mf-vit-tiny").visual.eval()
    result = mf.adapt(method, base, experts, encoder, [heads[t] for t in TASKS],
                      batch_sampler([inputs[t] for t in TASKS], 4, 0), steps=3, prior=float(prior))
    assert set(written) == set(result.state) == set(base)
    for key, value in result.state.items():
        assert torch.equal(written[key], value), key
    assert any(not torch.equal(written[key], base[key]) for key in base)  # a merge, not theta_0


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_bad_adaptation_input_gets_one_line_and_no_file(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adapted.safetensors"
    method = ("--method", "adarank_ta", "--prior", "0.3")
    _fails(_argv(files, out, "--method", "adarank_svd", "--prior", "0.3"), capsys, "adarank_svd")
    _fails(_argv(files, out, *method, tasks=TASKS[:1]), capsys, "at least two experts")
    small = tmp_path / "small.safetensors"
    mf.save_checkpoint({task: torch.randn(2, 3, 16, 16) for task in TASKS}, small)
    argv = _argv(files, out, *method)
    _fails([small.as_posix() if a == str(files["inputs"]) else a for a in argv], capsys, "do not fit")
    partial = tmp_path / "partial.safetensors"
    mf.save_checkpoint({task: torch.randn(4, 128) for task in TASKS[:2]}, partial)
    _fails([partial.as_posix() if a == str(files["heads"]) else a for a in argv], capsys, "missing ['textures']")
    _fails([a.replace("mf-vit-tiny", "mf-vit-minilm") for a in argv], capsys, "image encoder's")
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
