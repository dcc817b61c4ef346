"""check-params refuses what cannot run or means nothing (issue 18, item 2): no NaN/inf anywhere, sizes that fit the data,
merges that are meaningful for the suite's task count (the declared rules), and a YAML key given twice."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mergeflow.declarations.adaptation import ADAPT_DECLARATIONS
from mergeflow.declarations.common import Declaration
from mergeflow.declarations.dynamic import DYNAMIC_DECLARATIONS
from mergeflow.declarations.lora import LORA_DECLARATIONS
from mergeflow.declarations.merging import MERGE_DECLARATIONS
from mergeflow.errors import MergeflowError
from mergeflow.params import load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
NON_FINITE = (math.nan, math.inf, -math.inf)


def _float_leaves(node: object, path: tuple[object, ...] = ()) -> Iterator[tuple[object, ...]]:
    """The path of every float in params.yaml (list items included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _float_leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _float_leaves(value, (*path, index))
    elif isinstance(node, float):
        yield path


FLOAT_PATHS = list(_float_leaves(RAW))


def _set(raw: dict, path: tuple[object, ...], value: object) -> dict:
    bad = copy.deepcopy(raw)
    node = bad
    for part in path[:-1]:
        node = node[part]  # type: ignore[index]
    node[path[-1]] = value  # type: ignore[index]
    return bad


def test_params_yaml_has_float_fields_to_poison() -> None:
    assert len(FLOAT_PATHS) >= 20  # lr, eps, quantile, scale grids, lam grids, data fractions, ...


@pytest.mark.parametrize("path", FLOAT_PATHS, ids=lambda path: ".".join(map(str, path)))
@pytest.mark.parametrize("value", NON_FINITE, ids=("nan", "inf", "-inf"))
def test_no_float_field_takes_nan_or_inf(path: tuple[object, ...], value: float) -> None:
    """Every float of params.yaml, plain field, method block or grid: NaN and +-inf are refused naming the key."""
    section = str(path[0])
    with pytest.raises(MergeflowError, match=rf"params\.yaml: {section}[.:]"):
        parse_params(_set(RAW, path, value))


def _declared() -> Iterator[tuple[str, Declaration, str]]:
    for kind, declarations in (("merge", MERGE_DECLARATIONS), ("adapt", ADAPT_DECLARATIONS), ("lora", LORA_DECLARATIONS),
                               ("dynamic", DYNAMIC_DECLARATIONS)):
        for declaration in declarations.values():
            for parameter in declaration.hyperparameters:
                if parameter.kind in (float, int):
                    yield kind, declaration, parameter.name


@pytest.mark.parametrize(("kind", "declaration", "name"), list(_declared()),
                         ids=lambda item: item if isinstance(item, str) else getattr(item, "name", str(item)))
def test_every_declared_number_refuses_nan_and_inf(kind: str, declaration: Declaration, name: str) -> None:
    parameter = declaration.parameter(name)
    for value in NON_FINITE:
        with pytest.raises(MergeflowError, match=name):
            parameter.validate([value] if parameter.many else value)
        with pytest.raises(MergeflowError, match=name):
            parameter.parse(str(value))  # "nan", "inf", "-inf" from --set or the CLI


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda p: p["route"].__setitem__("samples", 1), r"route\.samples: .*greater than or equal to 2"),
        (lambda p: p["route"].__setitem__("samples", 5001), r"route\.samples: 5001 calibration samples .* only 5000"),
        (lambda p: p["route"]["analysis"].__setitem__("samples", [4, 6000]), r"route\.analysis\.samples: \[6000\] exceed"),
        (lambda p: p["route"]["analysis"].__setitem__("samples", [1, 4]), r"route\.analysis\.samples\.0: .*greater than or equal to 2"),
        (lambda p: p["suite"]["samples"].__setitem__("train", 32), r"route\.samples: 64 calibration samples"),
        (lambda p: p["adapt"].__setitem__("batch_size", 1001), r"adapt\.batch_size: 1001 inputs per batch, .* holds 1000"),
        (lambda p: p["adapt"].__setitem__("data_fraction", 0.01), r"adapt\.batch_size: 16 inputs per batch, .* holds 10"),
        (lambda p: p["merge"]["consensus_ta"].__setitem__("min_agreement", 9), r"merge\.consensus_ta: min_agreement 9 exceeds the 8"),
        (lambda p: p["merge"]["consensus_ta"].__setitem__("min_agreement", 100), r"merge\.consensus_ta: min_agreement 100"),
        (lambda p: p["merge"]["tsv_m"].__setitem__("rank", 0.2), r"merge\.tsv_m: rank 0\.2 keeps more than 1/T"),
        (lambda p: p["merge"]["task_arithmetic"].__setitem__("scale_grid", [0.0, 0.3]), r"merge\.task_arithmetic: scale 0 leaves"),
        (lambda p: p["merge"]["ties"].__setitem__("scale_grid", [0, 1.0]), r"merge\.ties: scale 0 leaves theta_0"),
        (lambda p: p["merge"]["iso_c"].__setitem__("scale_grid", [1.0, 0.0]), r"merge\.iso_c: scale 0"),
        (lambda p: p["merge"]["iso_cts"].__setitem__("scale_grid", [0.0]), r"merge\.iso_cts: scale 0"),
        (lambda p: p["merge"]["tsv_m"].__setitem__("scale_grid", [0.0, 1.0]), r"merge\.tsv_m: scale 0"),
        (lambda p: p["merge"]["consensus_ta"].update(scale=0.0), r"merge\.consensus_ta: scale 0"),
    ],
)
def test_cross_field_and_degenerate_settings_are_refused(edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    bad = copy.deepcopy(RAW)
    edit(bad)
    with pytest.raises(MergeflowError, match=expected):
        parse_params(bad)


def test_consensus_with_one_task_is_refused_by_its_declared_rule() -> None:
    declaration = MERGE_DECLARATIONS["consensus_ta"]
    with pytest.raises(MergeflowError, match="consensus_ta needs at least 2 experts, got 1"):
        declaration.check_meaningful(declaration.defaults(), 1)
    declaration.check_meaningful(declaration.defaults(), 2)  # min_agreement 2 of 2: fine


def test_cart_scale_zero_is_meaningful() -> None:
    """CART at scale 0 is the experts' average, not theta_0: no rule refuses it."""
    bad = copy.deepcopy(RAW)
    bad["merge"]["cart"] = {"scale": 0.0}
    parse_params(bad)


def test_yaml_spellings_of_infinity_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text()
    eps_line = next(line for line in text.splitlines() if line.startswith("  eps:"))
    path.write_text(text.replace(eps_line, "  eps: .inf", 1))
    with pytest.raises(MergeflowError, match=r"route\.eps: Input should be a finite number"):
        load_params(path)
    lr_line = next(line for line in text.splitlines() if line.startswith("  lr:"))
    path.write_text(text.replace(lr_line, "  lr: .NaN", 1))
    with pytest.raises(MergeflowError, match=r"\.lr: Input should be a finite number"):
        load_params(path)


def test_params_file_that_is_a_directory_not_utf8_or_unreadable(tmp_path: Path) -> None:
    with pytest.raises(MergeflowError, match="is a directory"):
        load_params(tmp_path)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("suite: caf\xe9\n".encode("latin-1"))
    with pytest.raises(MergeflowError, match="not UTF-8"):
        load_params(latin)
    locked = tmp_path / "locked.yaml"
    locked.write_text("suite: {}\n")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reads")
        with pytest.raises(MergeflowError, match="cannot read the params file"):
            load_params(locked)
    finally:
        locked.chmod(0o600)


def test_merge_stage_refuses_a_degenerate_consensus_before_reading_anything(tmp_path: Path) -> None:
    """The declared rule at stage start: merge@consensus_ta with min_agreement above the task count exits 2, one line."""
    raw = copy.deepcopy(RAW)
    raw["merge"]["consensus_ta"]["min_agreement"] = 9
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "tasks.merge", "consensus_ta", "--params", str(tmp_path / "params.yaml")],
                          cwd=tmp_path, env={"PYTHONPATH": f"{ROOT}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "min_agreement 9 exceeds the 8 experts" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "artifacts").exists()
