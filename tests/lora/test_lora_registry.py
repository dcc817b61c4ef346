"""The LoRA-expert methods are declared once (src/mergeflow/lora/methods.py): unique results-table names, the names
params.py validates with, and stage modules that only look methods up."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

import pytest

from mergeflow.errors import MergeflowError
from mergeflow.lora.methods import LORA_REGISTRY, get_lora_method
from mergeflow.declarations.lora import LORA_METHODS
from mergeflow.params import LoraParams

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("tasks/calibrate_lora.py", "tasks/evaluate_lora.py")


def test_every_method_has_unique_results_table_names() -> None:
    pairs = [(method.method, method.router) for method in LORA_REGISTRY.values()]
    assert len(set(pairs)) == len(pairs)
    assert {name: (m.method, m.router) for name, m in LORA_REGISTRY.items()} == {
        "experts": ("finetuned", "oracle"), "task_arithmetic": ("task_arithmetic", "none"), "tr": ("tr_merging", "tr"),
        "twin": ("twin_merging", "twin"), "dawin": ("dawin", "dawin"), "mad": ("finetuned", "mad")}
    assert all(name == method.name and method.summary for name, method in LORA_REGISTRY.items())


def test_params_validates_lora_methods_with_the_registry_names() -> None:
    assert tuple(LORA_REGISTRY) == LORA_METHODS
    (literal,) = get_args(LoraParams.model_fields["methods"].annotation)
    assert get_args(literal) == LORA_METHODS
    with pytest.raises(MergeflowError, match="LoRA method"):
        get_lora_method("nope")


def test_settings_only_methods_need_no_inputs_and_the_others_refuse_none() -> None:
    for method in LORA_REGISTRY.values():
        if method.fits:
            with pytest.raises(MergeflowError, match="fits on the experts"):
                method.calibrate({}, None)
        else:
            tensors, _ = method.calibrate({"scale": 0.3, "head": "dataset", "mode": "per_input"}, None)
            assert tensors == {}
    assert [name for name, method in LORA_REGISTRY.items() if method.needs_grad] == ["twin"]


def _string_literals(path: Path) -> list[str]:
    """Every string constant of a module but its docstrings."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_modules_hold_no_per_method_table(stage: str) -> None:
    names = set(LORA_REGISTRY) | {m.method for m in LORA_REGISTRY.values()} | {m.router for m in LORA_REGISTRY.values()}
    literals = _string_literals(ROOT / stage)
    assert literals, "the walk found no strings"
    named = sorted({word for text in literals for word in re.findall(r"[A-Za-z_]+", text)} & names)
    assert not named, f"{stage} names LoRA methods itself ({', '.join(named)}): declare them in src/mergeflow/lora/methods.py"
