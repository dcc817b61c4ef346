"""The command line imports only what the command needs (issue 17: a fast start).

Each check runs in a fresh interpreter and inspects ``sys.modules`` after the command: building the parser and
``merge --help`` import no torch at all (the method list comes from the torch-free declarations); a merge imports
torch and the streaming runner but neither the heavy libraries of other commands nor the modules of other methods.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("open_clip", "transformers", "pandas", "pyarrow", "prefect", "dvc", "datasets", "sklearn", "scipy", "PIL")


def imported_after(code: str) -> set[str]:
    """The top-level names in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def run_cli(argv: list[str]) -> str:
    return f"from mergeflow.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"


@pytest.mark.parametrize("argv", [None, ["merge", "--help"], ["--help"]], ids=["build_parser", "merge_help", "help"])
def test_parser_and_help_import_no_torch(argv: list[str] | None) -> None:
    code = "from mergeflow.cli import build_parser\nbuild_parser()" if argv is None else run_cli(argv)
    modules = imported_after(code)
    loaded = top_level(modules)
    assert not loaded & {"torch", "numpy", "safetensors", *HEAVY}, sorted(loaded & {"torch", "numpy", "safetensors", *HEAVY})
    assert "mergeflow.merging.registry" not in modules


def test_merge_imports_torch_and_only_its_method(tmp_path: Path) -> None:
    tensors = "{'w': torch.arange(6.0).reshape(2, 3), 'b': torch.ones(3)}"
    make = (
        "import torch\nfrom safetensors.torch import save_file\n"
        f"save_file({tensors}, {str(tmp_path / 'base.safetensors')!r})\n"
        + "".join(f"save_file({{k: v + {i} for k, v in {tensors}.items()}}, {str(tmp_path / f'{n}.safetensors')!r})\n"
                  for i, n in enumerate("ab", start=1))
    )
    subprocess.run([sys.executable, "-c", make], check=True)
    argv = ["merge", "--method", "ties", "--base", str(tmp_path / "base.safetensors"),
            "--expert", f"a={tmp_path / 'a.safetensors'}", "--expert", f"b={tmp_path / 'b.safetensors'}",
            "--out", str(tmp_path / "out.safetensors")]
    modules = imported_after(run_cli(argv))
    assert (tmp_path / "out.safetensors").exists()
    assert {"torch", "mergeflow.merging.streaming", "mergeflow.merging.ties"} <= modules
    assert not top_level(modules) & set(HEAVY), sorted(top_level(modules) & set(HEAVY))
    others = {"mergeflow.merging.tsv", "mergeflow.merging.cart", "mergeflow.merging.iso", "mergeflow.merging.emr",
              "mergeflow.merging.tall", "mergeflow.merging.spectral", "mergeflow.models", "mergeflow.lora",
              "mergeflow.routing", "mergeflow.adaptation", "mergeflow.evaluation"}
    assert not modules & others, sorted(modules & others)


def test_help_lists_every_registry_method() -> None:
    """The help text (from the declarations) and the registry name the same methods."""
    from mergeflow.cli import _methods_help
    from mergeflow.merging.registry import METHODS

    text = _methods_help()
    for name in METHODS:
        assert f"  {name}: " in text
    assert json.dumps(sorted(METHODS))  # the registry still binds every declared method
