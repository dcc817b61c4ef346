"""`mergeflow route fit` / `route predict` end to end on features the test makes, and their errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import mergeflow as mf
from mergeflow.cli import main

TASKS = ("digits", "signs", "textures")


def _features(seed: int, rows: int) -> dict[str, torch.Tensor]:
    """Each task's features sit around its own axis (distinct directions: every router, cosine included, separates them)."""
    generator = torch.Generator().manual_seed(seed)
    return {task: torch.randn(rows, 6, generator=generator) + 6.0 * torch.eye(6)[index] for index, task in enumerate(TASKS)}


@pytest.fixture()
def calibration(tmp_path: Path) -> Path:
    path = tmp_path / "calibration.safetensors"
    mf.save_checkpoint(_features(0, 40), path)
    return path


@pytest.mark.parametrize("router", ["mad", "pooled", "cosine", "knn3"])
def test_fit_then_predict_routes_every_input_to_its_task(tmp_path: Path, calibration: Path, router: str) -> None:
    out, inputs, routed = tmp_path / "router.safetensors", tmp_path / "inputs.safetensors", tmp_path / "routed.parquet"
    assert main(["route", "fit", "--router", router, "--features", str(calibration), "--out", str(out), "--samples", "32"]) == 0
    loaded = mf.load_router(out)
    assert loaded.name == router and loaded.tasks == TASKS
    mf.save_checkpoint(_features(1, 10), inputs)
    assert main(["route", "predict", "--router", str(out), "--features", str(inputs), "--out", str(routed)]) == 0
    table = pd.read_parquet(routed)
    assert list(table.columns) == ["key", "row", "task", "task_index", "min_distance"]
    assert len(table) == 30 and (table["task"] == table["key"]).all()
    # the CLI's router is the API's, fitted on the same seeded draw
    from mergeflow.routing.calibration import draw_calibration

    features = _features(0, 40)
    drawn = dict(zip(features, draw_calibration(list(features.values()), list(features), 32, 0), strict=True))
    api = mf.fit_task_router(router, drawn)
    for key, value in api.state().items():
        assert torch.equal(value, loaded.state()[key]), key


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_bad_features_and_routers_get_one_line_and_no_file(tmp_path: Path, calibration: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "router.safetensors"
    one_task = tmp_path / "one.safetensors"
    mf.save_checkpoint({"digits": torch.randn(5, 6)}, one_task)
    _fails(["route", "fit", "--features", str(one_task), "--out", str(out)], capsys, "at least two tasks")
    flat = tmp_path / "flat.safetensors"
    mf.save_checkpoint({"digits": torch.randn(5), "signs": torch.randn(5)}, flat)
    _fails(["route", "fit", "--features", str(flat), "--out", str(out)], capsys, "(N, D) floating-point")
    _fails(["route", "fit", "--router", "nearest", "--features", str(calibration), "--out", str(out)], capsys, "nearest")
    _fails(["route", "fit", "--features", str(calibration), "--out", str(out), "--samples", "99"], capsys, "only 40")
    _fails(["route", "fit", "--features", str(tmp_path / "missing.safetensors"), "--out", str(out)], capsys, "no such file")
    assert not out.exists()
    assert main(["route", "fit", "--features", str(calibration), "--out", str(out)]) == 0
    wide, routed = tmp_path / "wide.safetensors", tmp_path / "routed.parquet"
    mf.save_checkpoint({"x": torch.randn(3, 7)}, wide)
    _fails(["route", "predict", "--router", str(out), "--features", str(wide), "--out", str(routed)], capsys, "(B, 6)")
    _fails(["route", "predict", "--router", str(calibration), "--features", str(wide), "--out", str(routed)], capsys,
           "not a mergeflow router file")
    assert not routed.exists() and not list(tmp_path.glob(".*.tmp"))
