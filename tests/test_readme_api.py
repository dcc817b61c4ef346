"""The README's API examples run as written, and the API, the CLI and the library agree on the same merge."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mergeflow as mf

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## On your own models: the Python API and the CLI"


def api_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index(SECTION):]
    section = section[: section.index("\n## ", len(SECTION))]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_readme_api_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = api_blocks()
    assert len(blocks) >= 3, "the API section lost its examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 -- the README's own examples
    assert {"ties", "bank", "router", "served", "result", "y"} <= set(namespace)
    served = namespace["served"]
    assert isinstance(served, mf.Prediction)
    # the example's tasks are far apart: MAD routes every input of the mixed batch to its own task
    assert served.tasks.tolist() == [index for index in range(3) for _ in range(10)]
    assert (tmp_path / "mad.safetensors").exists() and (tmp_path / "ties.safetensors").exists()


def test_exports_are_lazy_and_complete() -> None:
    code = "import sys, mergeflow; assert 'torch' not in sys.modules, 'import mergeflow loaded torch'; print(sorted(mergeflow.__all__))"
    listing = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "merge" in listing and "TaskVector" in listing
    for name in mf.__all__:
        assert getattr(mf, name) is not None, name


def test_task_vector_algebra_checks_its_operands() -> None:
    base = {"w": torch.zeros(2, 2), "steps": torch.tensor(3)}
    a = mf.TaskVector.between(base, {"w": torch.ones(2, 2), "steps": torch.tensor(3)})
    assert torch.equal((2 * a - a).tensors["w"], torch.ones(2, 2))
    assert torch.equal((-a).apply_to(base, scale=0.5)["w"], torch.full((2, 2), -0.5))
    assert torch.equal(sum([a, a]).apply_to(base)["steps"], torch.tensor(3))  # integer buffers come from the base
    with pytest.raises(mf.MergeflowError, match="different keys"):
        a + mf.TaskVector({"v": torch.ones(2)})
    with pytest.raises(mf.MergeflowError, match="shape"):
        a.apply_to({"w": torch.zeros(3, 2)})
    with pytest.raises(mf.MergeflowError, match="integer"):
        mf.TaskVector({"steps": torch.tensor(3)})


def test_merge_and_merge_bank_refuse_the_other_kind() -> None:
    base = {"w": torch.zeros(4, 4)}
    experts = {"a": {"w": torch.eye(4)}, "b": {"w": -torch.eye(4) + 0.1}}
    with pytest.raises(mf.MergeflowError, match="merge_bank"):
        mf.merge("tall_ta", base, experts)
    with pytest.raises(mf.MergeflowError, match=r"call merge\("):
        mf.merge_bank("ties", base, experts)
    with pytest.raises(mf.MergeflowError, match="unknown"):
        mf.merge("no_such_method", base, experts)


def test_one_merge_through_the_api_the_cli_and_the_library_is_identical(tmp_path: Path) -> None:
    from mergeflow.cli import main
    from mergeflow.merging.common import add_to_base
    from mergeflow.merging.plan import as_delta
    from mergeflow.merging.registry import run_method

    torch.manual_seed(1)
    base = {"a.weight": torch.randn(12, 10), "a.bias": torch.randn(12), "n": torch.tensor(7)}
    experts = {f"t{i}": {k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v for k, v in base.items()}
               for i in range(4)}
    mf.save_checkpoint(base, tmp_path / "base.safetensors")
    for name, expert in experts.items():
        mf.save_checkpoint(expert, tmp_path / f"{name}.safetensors")
    for method, settings in (("ties", {"k": 0.3, "scale": 0.9}), ("tsv_m", {"scale": 1.0}), ("task_arithmetic", {"scale": 0.4})):
        api = mf.merge(method, base, experts, **settings)
        library_delta = run_method(method, {n: {k: e[k] - base[k] for k in ("a.weight", "a.bias")} for n, e in experts.items()}, settings)
        library = add_to_base(base, as_delta(library_delta))
        out = tmp_path / f"{method}.safetensors"
        argv = ["merge", "--method", method, "--base", str(tmp_path / "base.safetensors"), "--out", str(out)]
        argv += [f"--expert={name}={tmp_path / name}.safetensors" for name in experts]
        argv += [f"--set={key}={value}" for key, value in settings.items()]
        assert main(argv) == 0
        cli = mf.load_checkpoint(out)
        assert set(api) == set(cli) == set(library)
        for key in api:
            assert torch.equal(api[key], cli[key]) and torch.equal(api[key], library[key]), (method, key)
