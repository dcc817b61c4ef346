"""The LoRA-expert methods are declared once (src/mergeflow/declarations/lora.py, bound in lora/methods.py): unique
results-table names, the names and hyperparameters params.py validates with, and stage modules that only look methods
up."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mergeflow.declarations.lora import LORA_DECLARATIONS, LORA_METHODS
from mergeflow.errors import MergeflowError
from mergeflow.lora.methods import LORA_REGISTRY, get_lora_method

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
    assert tuple(LORA_REGISTRY) == LORA_METHODS == tuple(LORA_DECLARATIONS)
    assert all(method.declaration is LORA_DECLARATIONS[name] for name, method in LORA_REGISTRY.items())
    with pytest.raises(MergeflowError, match="unknown LoRA method 'nope'; known: experts, task_arithmetic, tr"):
        get_lora_method("nope")
    assert LORA_REGISTRY["tr"].resolve({"top_k": [1, 2]})["top_k"] == [1, 2]


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
    assert not named, f"{stage} names LoRA methods itself ({', '.join(named)}): declare them in src/mergeflow/declarations/lora.py"


def test_list_and_boolean_hyperparameters_are_checked_item_by_item() -> None:
    tr = LORA_DECLARATIONS["tr"]
    assert tr.resolve({})["temperatures"] == [0.001, 0.003, 0.01, 0.03, 0.1, 1.0]
    assert tr.resolve({})["temperatures"] is not tr.resolve({})["temperatures"]  # a fresh list: the default stays as declared
    assert tr.resolve({"temperatures": [1, 0.5]})["temperatures"] == [1.0, 0.5]  # integers are numbers, as for one value
    assert tr.parse_assignments(["top_k=1, 2", "renormalize=true", "form=scaled"]) == {
        "top_k": [1, 2], "renormalize": True, "form": "scaled"}
    for overrides, message in (({"temperatures": []}, "temperatures must be a non-empty list of numbers"),
                               ({"temperatures": 0.1}, "temperatures must be a non-empty list of numbers"),
                               ({"top_k": [1, 0]}, "top_k must be an integer >= 1, got 0"),
                               ({"top_k": [1, True]}, "top_k must be an integer, got True"),
                               ({"renormalize": 1}, "renormalize must be true or false, got 1"),
                               ({"samples": True}, "samples must be an integer, got True")):
        with pytest.raises(MergeflowError, match=re.escape(message)):
            tr.resolve(overrides)
    with pytest.raises(MergeflowError, match="renormalize must be true or false, got 'yes'"):
        tr.parse_assignments(["renormalize=yes"])
    with pytest.raises(MergeflowError, match=r"dropout must be in \[0, 1\)"):
        LORA_DECLARATIONS["twin"].resolve({"dropout": 1.0})
    assert "  top_k (list of integers, default [1, 2, 3, 8]): " in "\n".join(tr.describe())
    assert "  renormalize (boolean, default False): " in "\n".join(tr.describe())
