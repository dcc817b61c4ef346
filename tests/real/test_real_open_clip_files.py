"""open_clip checkpoints as published: TALL masks' state dicts load without unpickling; task_vectors-style pickled
modules are refused with one message naming the conversion, which `mergeflow convert-checkpoint --trust-pickle` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clip_kit import tiny_open_clip
from torch import nn

from mergeflow.checkpoints.open_clip_files import load_open_clip_vision, read_torch_state_dict, tall_masks_path
from mergeflow.cli import main
from mergeflow.errors import MergeflowError
from mergeflow.statedict.io import read_safetensors


class ImageEncoder(nn.Module):
    """As task_vectors' and TALL masks' ImageEncoder: the open_clip CLIP as ``self.model``, the whole module pickled."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


@pytest.fixture(scope="module")
def clip() -> nn.Module:
    return tiny_open_clip(seed=11)


def _visual(clip: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value for key, value in clip.state_dict().items() if key.startswith("visual.")}


def _same(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> bool:
    return sorted(left) == sorted(right) and all(torch.equal(left[key], right[key]) for key in right)


def _tall_file(root: Path, clip: nn.Module, task: str = "Cars") -> Path:
    """A TALL-masks encoder: ``model.``-prefixed keys, the text transformer deleted, other text keys left in."""
    state = {f"model.{key}": value for key, value in clip.state_dict().items() if not key.startswith("transformer.")}
    assert {"model.token_embedding.weight", "model.logit_scale", "model.ln_final.weight"} <= set(state)
    path = tall_masks_path(root, task)
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path


def test_tall_masks_state_dict_loads_as_the_open_clip_image_tower(tmp_path: Path, clip: nn.Module) -> None:
    path = _tall_file(tmp_path / "ViT-B-32", clip)
    assert path == tmp_path / "ViT-B-32" / "CarsVal" / "nonlinear_finetuned.pt"
    assert _same(load_open_clip_vision(path), _visual(clip))


def test_an_unknown_key_in_a_state_dict_is_refused(tmp_path: Path, clip: nn.Module) -> None:
    state = {f"model.{key}": value for key, value in clip.state_dict().items()}
    state["model.classifier.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(MergeflowError, match=r"keys of neither open_clip tower: \['classifier.weight'\]"):
        load_open_clip_vision(tmp_path / "odd.pt")


def test_damaged_files_are_one_readable_error(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(MergeflowError, match="not a readable torch checkpoint"):
        read_torch_state_dict(tmp_path / "junk.pt")
    with pytest.raises(MergeflowError, match="no such file"):
        read_torch_state_dict(tmp_path / "absent.pt")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "nested.pt")
    with pytest.raises(MergeflowError, match="nested"):
        read_torch_state_dict(tmp_path / "nested.pt")


def test_a_pickled_module_is_refused_with_the_conversion_command(tmp_path: Path, clip: nn.Module,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "Cars" / "finetuned.pt"
    path.parent.mkdir()
    torch.save(ImageEncoder(clip), path)
    command = f"mergeflow convert-checkpoint {path} {path.with_suffix('.safetensors')} --trust-pickle"
    with pytest.raises(MergeflowError, match="pickled Python object") as refused:
        load_open_clip_vision(path)
    assert command in str(refused.value)
    out = tmp_path / "cars.safetensors"
    assert main(["convert-checkpoint", str(path), str(out)]) == 2  # no flag: the same message, one line, no traceback
    error = capsys.readouterr().err
    assert error.startswith("mergeflow: ") and command in error and "Traceback" not in error and error.count("\n") == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["Cars"]


def test_the_command_line_refuses_a_pickle_with_exit_status_2_and_no_traceback(tmp_path: Path) -> None:
    torch.save(nn.Linear(2, 2), tmp_path / "head.pt")  # a real process: what a user's shell sees
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "mergeflow.cli", "convert-checkpoint", str(tmp_path / "head.pt"),
                           str(tmp_path / "head.safetensors")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.startswith("mergeflow: ") and "--trust-pickle`" in done.stderr and done.stderr.count("\n") == 1


def test_the_trusted_conversion_writes_safetensors_that_load(tmp_path: Path, clip: nn.Module,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "finetuned.pt"
    torch.save(ImageEncoder(clip), path)
    as_stored, vision = tmp_path / "as_stored.safetensors", tmp_path / "vision.safetensors"
    assert main(["convert-checkpoint", str(path), str(as_stored), "--trust-pickle"]) == 0
    tensors, meta = read_safetensors(as_stored)
    assert meta == {"converted_from": "finetuned.pt", "layout": "as stored"}
    assert _same(tensors, {f"model.{key}": value for key, value in clip.state_dict().items()})
    assert _same(load_open_clip_vision(as_stored), _visual(clip))  # prefix stripped, the whole text tower dropped
    assert main(["convert-checkpoint", str(path), str(vision), "--trust-pickle", "--vision"]) == 0
    assert "open_clip vision tower" in capsys.readouterr().out
    tensors, meta = read_safetensors(vision)
    assert meta["layout"] == "open_clip vision tower" and _same(tensors, _visual(clip))


def test_a_state_dict_converts_without_the_flag_and_a_pickled_head_with_it(tmp_path: Path, clip: nn.Module) -> None:
    tall = _tall_file(tmp_path, clip)
    assert main(["convert-checkpoint", str(tall), str(tmp_path / "cars.safetensors"), "--vision"]) == 0
    assert _same(read_safetensors(tmp_path / "cars.safetensors")[0], _visual(clip))
    head = nn.Linear(16, 3)  # task_vectors' head_<Task>.pt: a pickled ClassificationHead(nn.Linear)
    torch.save(head, tmp_path / "head_Cars.pt")
    assert main(["convert-checkpoint", str(tmp_path / "head_Cars.pt"), str(tmp_path / "head.safetensors"), "--trust-pickle"]) == 0
    assert _same(read_safetensors(tmp_path / "head.safetensors")[0], dict(head.state_dict()))


def test_a_pickle_whose_classes_are_gone_names_what_it_needs(tmp_path: Path, clip: nn.Module, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "finetuned.pt"
    torch.save(ImageEncoder(clip), path)
    monkeypatch.delattr(sys.modules[__name__], "ImageEncoder")  # as old open_clip's `VisualTransformer` is gone today
    assert main(["convert-checkpoint", str(path), str(tmp_path / "out.safetensors"), "--trust-pickle"]) == 2
    error = capsys.readouterr().err
    assert "needs the Python classes" in error and "ImageEncoder" in error and "Traceback" not in error
    assert not (tmp_path / "out.safetensors").exists()


def test_the_output_may_not_overwrite_the_input(tmp_path: Path, clip: nn.Module, capsys: pytest.CaptureFixture[str]) -> None:
    path = _tall_file(tmp_path, clip)
    assert main(["convert-checkpoint", str(path), str(path)]) == 2
    assert "is the input" in capsys.readouterr().err
