"""Every `mergeflow` command against bad inputs (issue 18, item 3): wrong files in every file argument (missing, a
directory, empty, not UTF-8, text, unreadable, a valid file of the wrong kind, NaN tensors, truncated and mutated
safetensors headers, seeded), wrong argument values, and degenerate merges. Each case must end with exit status 2,
one line on stderr, no traceback, and nothing written where --out points.

``hypothesis`` is not installed in the project's environment, so the mutations are seeded and enumerated: every case
has a stable id, and a failure names the command, the argument and the mutation. Most cases run in-process (fast);
a few run as real subprocesses, where a traceback or a crash would show as it does to a user.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from mergeflow.cli import main

ROOT = Path(__file__).resolve().parents[1]
SEED = 18  # the number: every random mutation below derives from it


def _st_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save

    return save(tensors, metadata=metadata)


def _split(data: bytes) -> tuple[dict, bytes]:
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def _join(header: object, body: bytes, size: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * ((-len(text)) % 8)
    return struct.pack("<Q", len(text) if size is None else size) + text + body


def _first_tensor(header: dict) -> str:
    return next(key for key in header if key != "__metadata__")


def _edit_entry(field: str, value: object) -> Callable[[bytes], bytes]:
    def mutate(data: bytes) -> bytes:
        header, body = _split(data)
        header[_first_tensor(header)][field] = value
        return _join(header, body)

    return mutate


def _overlap(data: bytes) -> bytes:
    header, body = _split(data)
    keys = [key for key in header if key != "__metadata__"]
    header[keys[-1]]["data_offsets"] = header[keys[0]]["data_offsets"]
    return _join(header, body)


def _bad_metadata(data: bytes) -> bytes:
    header, body = _split(data)
    header["__metadata__"] = {"format": 1, "nested": {"a": "b"}}
    return _join(header, body)


def _header_mutations() -> dict[str, Callable[[bytes], bytes]]:
    """Named, deterministic header corruptions, plus seeded random truncations, header lengths and garbage headers."""
    rng = random.Random(SEED)
    mutations: dict[str, Callable[[bytes], bytes]] = {
        "header-length-huge": lambda data: struct.pack("<Q", 2**40) + data[8:],
        "header-length-zero": lambda data: struct.pack("<Q", 0) + data[8:],
        "header-length-past-end": lambda data: struct.pack("<Q", len(data)) + data[8:],
        "header-length-short": lambda data: data[:5],
        "header-not-json": lambda data: _join({}, b"")[:8] + b"{not json" + data[17:],
        "header-a-list": lambda data: _join([1, 2, 3], _split(data)[1]),
        "header-a-string": lambda data: _join("tensors", _split(data)[1]),
        "offsets-past-end": _edit_entry("data_offsets", [0, 10**6]),
        "offsets-reversed": _edit_entry("data_offsets", [8, 0]),
        "offsets-not-numbers": _edit_entry("data_offsets", ["a", "b"]),
        "offsets-overlap": _overlap,
        "dtype-unknown": _edit_entry("dtype", "Q7"),
        "dtype-not-a-string": _edit_entry("dtype", 32),
        "shape-mismatch": _edit_entry("shape", [1000, 1000]),
        "shape-negative": _edit_entry("shape", [-4, 3]),
        "shape-not-a-list": _edit_entry("shape", "4x3"),
        "metadata-not-strings": _bad_metadata,
        "entry-not-a-mapping": lambda data: _join({**_split(data)[0], _first_tensor(_split(data)[0]): [1]}, _split(data)[1]),
    }
    for index in range(4):
        fraction = rng.uniform(0.05, 0.95)
        mutations[f"truncated-{index}"] = lambda data, fraction=fraction: data[: max(1, int(len(data) * fraction))]
    for index in range(3):
        size = rng.randrange(9, 2**20)
        mutations[f"header-length-random-{index}"] = lambda data, size=size: struct.pack("<Q", size) + data[8:]
    for index in range(2):
        garbage = bytes(rng.randrange(256) for _ in range(48))
        mutations[f"header-garbage-{index}"] = lambda data, garbage=garbage: data[:8] + garbage + data[8 + len(garbage) :]
    return mutations


MUTATIONS = _header_mutations()
PLAIN_KINDS = ("missing", "directory", "empty", "not-utf8", "text", "unreadable", "wrong-kind", "nan-tensor")
FILE_KINDS = PLAIN_KINDS + tuple(f"mutated:{name}" for name in MUTATIONS)


@dataclass
class Files:
    """Valid inputs for every command, and where bad ones are made."""

    root: Path
    base: Path
    experts: dict[str, Path]
    features: Path
    router: Path
    heads: Path
    inputs: Path
    results: Path
    params: Path

    def bad(self, kind: str, like: Path, name: str) -> Path:
        """A bad file of ``kind`` in place of ``like`` (mutations start from its bytes)."""
        path = self.root / "bad" / name
        path.parent.mkdir(exist_ok=True)
        if kind == "missing":
            return path
        if kind == "directory":
            path.mkdir()
            (path / "inside.txt").write_text("a directory, not a file")
            return path
        if kind == "empty":
            path.write_bytes(b"")
        elif kind == "not-utf8":
            path.write_bytes(b"\xff\xfe\x00\x80 caf\xe9 \x9c" * 16)
        elif kind == "text":
            path.write_text("suite: not a checkpoint\n")
        elif kind == "unreadable":
            path.write_bytes(like.read_bytes())
            path.chmod(0)
        elif kind == "wrong-kind":  # a valid file of another kind: a checkpoint for features, features for a checkpoint
            path.write_bytes((self.results if like.suffix == ".safetensors" else self.base).read_bytes())
        elif kind == "nan-tensor":
            save_file({"w": torch.full((4, 3), float("nan")), "b": torch.zeros(3)}, path)
        else:
            path.write_bytes(MUTATIONS[kind.removeprefix("mutated:")](like.read_bytes()))
        return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("fuzz")
    generator = torch.Generator().manual_seed(SEED)
    base = {"w": torch.randn(4, 3, generator=generator), "b": torch.randn(3, generator=generator), "n": torch.tensor([7])}
    save_file(base, root / "base.safetensors")
    experts = {}
    for name in ("cars", "dtd"):
        experts[name] = root / f"{name}.safetensors"
        save_file({key: value + 0.1 * torch.randn(value.shape, generator=generator) if value.is_floating_point() else value
                   for key, value in base.items()}, experts[name])
    save_file({name: torch.randn(16, 4, generator=generator) + index for index, name in enumerate(experts)}, root / "features.safetensors")
    assert main(["route", "fit", "--features", str(root / "features.safetensors"), "--out", str(root / "router.safetensors")]) == 0
    save_file({name: torch.randn(2, 4, generator=generator) for name in experts}, root / "heads.safetensors")
    save_file({name: torch.randn(3, 3, 8, 8, generator=generator) for name in experts}, root / "inputs.safetensors")
    pd.DataFrame({"suite": ["s"], "method": ["ta"], "router": ["oracle"], "task": ["cars"], "metric": ["accuracy"],
                  "value": [0.5]}).to_parquet(root / "results.parquet")
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    return Files(root, root / "base.safetensors", experts, root / "features.safetensors", root / "router.safetensors",
                 root / "heads.safetensors", root / "inputs.safetensors", root / "results.parquet", root / "params.yaml")


# Each command with its file arguments: (argument name, the valid file it stands in for) and its argv builder.
def _merge(f: Files, out: Path, base: Path | None = None, expert: Path | None = None, *extra: str) -> list[str]:
    return ["merge", "--method", "ties", "--base", str(base or f.base), "--expert", f"cars={expert or f.experts['cars']}",
            "--expert", f"dtd={f.experts['dtd']}", "--out", str(out), *extra]


def _adapt(f: Files, out: Path, base: Path | None = None, expert: Path | None = None, heads: Path | None = None,
           inputs: Path | None = None, *extra: str) -> list[str]:
    return ["adapt", "--method", "adarank_ta", "--model", "mf-vit-tiny", "--base", str(base or f.base),
            "--expert", f"cars={expert or f.experts['cars']}", "--expert", f"dtd={f.experts['dtd']}",
            "--heads", str(heads or f.heads), "--inputs", str(inputs or f.inputs), "--out", str(out), "--steps", "1", *extra]


FILE_ARGUMENTS: dict[str, tuple[str, Callable[[Files, Path, Path], list[str]]]] = {
    "merge --base": ("base", lambda f, bad, out: _merge(f, out, base=bad)),
    "merge --expert": ("base", lambda f, bad, out: _merge(f, out, expert=bad)),
    "merge --method emr --expert": ("base", lambda f, bad, out: [*_merge(f, out, expert=bad)[:2], "emr", *_merge(f, out, expert=bad)[3:]]),
    "adapt --base": ("base", lambda f, bad, out: _adapt(f, out, base=bad)),
    "adapt --expert": ("base", lambda f, bad, out: _adapt(f, out, expert=bad)),
    "adapt --heads": ("heads", lambda f, bad, out: _adapt(f, out, heads=bad)),
    "adapt --inputs": ("inputs", lambda f, bad, out: _adapt(f, out, inputs=bad)),
    "route fit --features": ("features", lambda f, bad, out: ["route", "fit", "--features", str(bad), "--out", str(out)]),
    "route predict --router": ("router", lambda f, bad, out: ["route", "predict", "--router", str(bad), "--features",
                                                              str(f.features), "--out", str(out)]),
    "route predict --features": ("features", lambda f, bad, out: ["route", "predict", "--router", str(f.router), "--features",
                                                                  str(bad), "--out", str(out)]),
    "convert-checkpoint IN.safetensors": ("base", lambda f, bad, out: ["convert-checkpoint", str(bad), str(out)]),
    "convert-checkpoint --vision IN": ("base", lambda f, bad, out: ["convert-checkpoint", str(bad), str(out), "--vision"]),
    "results --path": ("results", lambda f, bad, out: ["results", "--path", str(bad)]),
    "check-params": ("params", lambda f, bad, out: ["check-params", str(bad)]),
}
# What does not apply: a NaN tensor or a checkpoint is a valid file for commands that do not read tensors' values; a
# checkpoint converted as it is stays a checkpoint ("wrong-kind" is then a results table, refused).
SKIP = {("results --path", "nan-tensor"), ("check-params", "nan-tensor")}


def _suffixed(argument: str, kind: str) -> str:
    """The bad file's name: the suffix the argument expects (a .pt for convert, .parquet for results, .yaml for params)."""
    stem = f"{argument.replace(' ', '_').replace('-', '')}-{kind.replace(':', '_')}"
    suffix = {"results --path": ".parquet", "check-params": ".yaml"}.get(argument, ".safetensors")
    return stem + suffix


def _run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def _assert_refused(code: int, err: str, out_dir: Path, case: str, *, lines: int | None = 1) -> None:
    assert code == 2, f"{case}: exit {code}, stderr {err!r}"
    assert "Traceback" not in err, f"{case}: {err}"
    assert err.strip(), f"{case}: no message"
    if lines is not None:
        assert len(err.strip().splitlines()) <= lines, f"{case}: {err!r}"
    left = sorted(path.name for path in out_dir.rglob("*"))
    assert not left, f"{case}: wrote {left}"


def _unreadable_applies(path: Path) -> bool:
    return not os.access(path, os.R_OK)


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("argument", list(FILE_ARGUMENTS))
def test_bad_file_in_every_file_argument(files: Files, argument: str, kind: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    if (argument, kind) in SKIP:
        pytest.skip("a valid input for this command")
    if argument == "check-params" and kind.startswith("mutated:"):
        pytest.skip("check-params reads YAML: a safetensors header mutation is the not-UTF-8 case again")
    like_name, build = FILE_ARGUMENTS[argument]
    like = getattr(files, like_name)
    if kind.startswith("mutated:") and like.suffix != ".safetensors":
        like = files.base  # a mutated checkpoint where a results table is expected
    bad = files.bad(kind, like, _suffixed(argument, kind))
    try:
        if kind == "unreadable" and not _unreadable_applies(bad):
            pytest.skip("running as root: chmod 000 does not stop reads")
        out_dir = tmp_path / "out"
        out_dir.mkdir()
        out = out_dir / ("out.parquet" if "predict" in argument else "out.safetensors")
        code, err = _run_in_process(build(files, bad, out), capsys)
        _assert_refused(code, err, out_dir, f"{argument} <{kind}>", lines=None if argument == "check-params" else 1)
        if kind == "directory" and not argument.startswith("convert"):  # convert reads a folder as a save_pretrained one
            assert "directory" in err, f"{argument} <directory>: {err!r}"
    finally:
        if bad.exists() and not bad.is_dir():
            bad.chmod(0o600)


# Wrong argument values: (case id, argv builder); every one must be refused with exit 2 and one line.
def _argv_cases() -> dict[str, Callable[[Files, Path], list[str]]]:
    cases: dict[str, Callable[[Files, Path], list[str]]] = {
        "merge unknown method": lambda f, out: [*_merge(f, out)[:2], "magic", *_merge(f, out)[3:]],
        "merge --set scale=abc": lambda f, out: _merge(f, out, None, None, "--set", "scale=abc"),
        "merge --set k=nan": lambda f, out: _merge(f, out, None, None, "--set", "k=nan"),
        "merge --set scale=inf": lambda f, out: _merge(f, out, None, None, "--set", "scale=inf"),
        "merge --set k=0": lambda f, out: _merge(f, out, None, None, "--set", "k=0"),
        "merge --set k=2": lambda f, out: _merge(f, out, None, None, "--set", "k=2"),
        "merge --set scale=0": lambda f, out: _merge(f, out, None, None, "--set", "scale=0"),
        "merge --set unknown=1": lambda f, out: _merge(f, out, None, None, "--set", "unknown=1"),
        "merge --set without =": lambda f, out: _merge(f, out, None, None, "--set", "scale"),
        "merge --expert without =": lambda f, out: ["merge", "--method", "ties", "--base", str(f.base), "--expert",
                                                    str(f.experts["cars"]), "--out", str(out)],
        "merge --expert twice": lambda f, out: ["merge", "--method", "ties", "--base", str(f.base), "--expert",
                                                f"a={f.experts['cars']}", "--expert", f"a={f.experts['dtd']}", "--out", str(out)],
        "merge --out is an input": lambda f, out: _merge(f, f.experts["dtd"]),
        "merge --task for a delta method": lambda f, out: _merge(f, out, None, None, "--task", "cars"),
        "merge --task unknown": lambda f, out: [*_merge(f, out)[:2], "tall_ta", *_merge(f, out)[3:], "--task", "svhn"],
        "merge experts = base (theta_0)": lambda f, out: ["merge", "--method", "task_arithmetic", "--base", str(f.base),
                                                          "--expert", f"a={f.base}", "--expert", f"b={f.base}", "--out", str(out)],
        "merge consensus_ta min_agreement=3 of 2": lambda f, out: [*_merge(f, out)[:2], "consensus_ta", *_merge(f, out)[3:],
                                                                   "--set", "min_agreement=3"],
        "merge consensus_ta one expert": lambda f, out: ["merge", "--method", "consensus_ta", "--base", str(f.base), "--expert",
                                                         f"a={f.experts['cars']}", "--out", str(out), "--set", "min_agreement=1"],
        "merge tall_ta lam=1e9 (masks keep nothing)": lambda f, out: [*_merge(f, out)[:2], "tall_ta", *_merge(f, out)[3:],
                                                                      "--set", "lam=1e9"],
        "merge tsv_m rank=0.9 of 2": lambda f, out: [*_merge(f, out)[:2], "tsv_m", *_merge(f, out)[3:], "--set", "rank=0.9"],
        "merge an expert of another shape": lambda f, out: _merge(f, out, None, f.features),
        "merge --out a directory": lambda f, out: _merge(f, out.parent),
        "adapt unknown method": lambda f, out: [*_adapt(f, out)[:2], "adamagic", *_adapt(f, out)[3:]],
        "adapt one expert": lambda f, out: ["adapt", "--method", "adarank_ta", "--model", "mf-vit-tiny", "--base", str(f.base),
                                            "--expert", f"cars={f.experts['cars']}", "--heads", str(f.heads), "--inputs",
                                            str(f.inputs), "--out", str(out)],
        "adapt --steps abc": lambda f, out: _adapt(f, out, None, None, None, None, "--steps", "abc"),
        "adapt --lr x": lambda f, out: _adapt(f, out, None, None, None, None, "--lr", "x"),
        "adapt heads missing a task": lambda f, out: _adapt(f, out, None, None, f.root / "one_task.safetensors", None),
        "adapt wrong model keys": lambda f, out: _adapt(f, out),  # the tiny checkpoints are not mf-vit-tiny's encoder
        "route fit unknown router": lambda f, out: ["route", "fit", "--router", "magic", "--features", str(f.features), "--out", str(out)],
        "route fit --eps abc": lambda f, out: ["route", "fit", "--features", str(f.features), "--out", str(out), "--eps", "abc"],
        "route fit --samples 0": lambda f, out: ["route", "fit", "--features", str(f.features), "--out", str(out), "--samples", "0"],
        "route fit --samples -3": lambda f, out: ["route", "fit", "--features", str(f.features), "--out", str(out), "--samples", "-3"],
        "route fit --samples 1": lambda f, out: ["route", "fit", "--features", str(f.features), "--out", str(out), "--samples", "1"],
        "route fit --eps nan": lambda f, out: ["route", "fit", "--features", str(f.features), "--out", str(out), "--eps", "nan"],
        "route fit --eps inf": lambda f, out: ["route", "fit", "--features", str(f.features), "--out", str(out), "--eps", "inf"],
        "route fit --eps -1": lambda f, out: ["route", "fit", "--features", str(f.features), "--out", str(out), "--eps=-1"],
        "route fit --eps 0": lambda f, out: ["route", "fit", "--features", str(f.features), "--out", str(out), "--eps", "0"],
        "route fit --samples 1000": lambda f, out: ["route", "fit", "--features", str(f.features), "--out", str(out),
                                                    "--samples", "1000"],
        "route fit one task": lambda f, out: ["route", "fit", "--features", str(f.heads.parent / "one_task.safetensors"),
                                              "--out", str(out)],
        "route predict a checkpoint as router": lambda f, out: ["route", "predict", "--router", str(f.base), "--features",
                                                                str(f.features), "--out", str(out)],
        "route predict features of another width": lambda f, out: ["route", "predict", "--router", str(f.router), "--features",
                                                                   str(f.heads.parent / "wide.safetensors"), "--out", str(out)],
        "convert --projection-from for a file": lambda f, out: ["convert-checkpoint", str(f.base), str(out), "--projection-from",
                                                                str(f.base)],
        "convert OUT is IN": lambda f, out: ["convert-checkpoint", str(f.base), str(f.base)],
        "convert a .pt that is a parquet": lambda f, out: ["convert-checkpoint", str(f.heads.parent / "table.pt"), str(out)],
        "results unknown metric": lambda f, out: ["results", "--path", str(f.results), "--metric", "f1"],
        "results a parquet of other columns": lambda f, out: ["results", "--path", str(f.heads.parent / "other.parquet")],
        "results a parquet with text values": lambda f, out: ["results", "--path", str(f.heads.parent / "text_values.parquet")],
        "no command": lambda f, out: [],
        "unknown command": lambda f, out: ["mergee"],
        "merge missing --out": lambda f, out: _merge(f, out)[:-2],
    }
    return cases


ARGV_CASES = _argv_cases()

# `adapt` with checkpoints of the real architecture (mf-vit-tiny's image encoder), so each wrong value reaches its check.
ADAPT_VALUES = {
    "--lr nan": ["--lr", "nan"], "--lr inf": ["--lr", "inf"], "--lr -1": ["--lr=-1"], "--lr 0": ["--lr", "0"],
    "--steps -1": ["--steps=-1"], "--batch-size 0": ["--batch-size", "0"], "--batch-size -2": ["--batch-size=-2"],
    "--prior nan": ["--prior", "nan"], "--prior inf": ["--prior", "inf"], "--rank 2": ["--rank", "2"],
    "--rank nan": ["--rank", "nan"], "--rank -0.5": ["--rank=-0.5"], "--common for adarank_ta": ["--common", "0.5"],
    "--method adarank_iso_cts --common 1.5": ["--method", "adarank_iso_cts", "--common", "1.5"],
    "--model unknown": ["--model", "ViT-Magic-1"], "--model of another shape": ["--model", "mf-vit-minilm"],
    "inputs of another size": ["--inputs", "small_inputs.safetensors"], "heads of another width": ["--heads", "narrow_heads.safetensors"],
}


@pytest.fixture(scope="module")
def encoder_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mergeflow.models.backbone import create_clip
    from mergeflow.models.clip_parts import visual

    root = tmp_path_factory.mktemp("adapt")
    encoder = visual(create_clip("mf-vit-tiny", pretrained=None, pretrained_text=False))
    state = {key: value.detach().clone().contiguous() for key, value in encoder.state_dict().items()}
    save_file(state, root / "base.safetensors")
    generator = torch.Generator().manual_seed(SEED)
    for name in ("cars", "dtd"):
        save_file({key: value + 0.01 * torch.randn(value.shape, generator=generator) for key, value in state.items()},
                  root / f"{name}.safetensors")
    width = int(encoder(torch.zeros(1, 3, 32, 32)).shape[-1])
    save_file({name: torch.randn(3, width, generator=generator) for name in ("cars", "dtd")}, root / "heads.safetensors")
    save_file({name: torch.randn(2, width + 1, generator=generator) for name in ("cars", "dtd")}, root / "narrow_heads.safetensors")
    save_file({name: torch.randn(4, 3, 32, 32, generator=generator) for name in ("cars", "dtd")}, root / "inputs.safetensors")
    save_file({name: torch.randn(4, 3, 9, 9, generator=generator) for name in ("cars", "dtd")}, root / "small_inputs.safetensors")
    return root


@pytest.mark.parametrize("case", list(ADAPT_VALUES))
def test_adapt_wrong_values(encoder_files: Path, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    extra = [str(encoder_files / item) if item.endswith(".safetensors") else item for item in ADAPT_VALUES[case]]
    argv = ["adapt", "--method", "adarank_ta", "--model", "mf-vit-tiny", "--base", str(encoder_files / "base.safetensors"),
            "--expert", f"cars={encoder_files / 'cars.safetensors'}", "--expert", f"dtd={encoder_files / 'dtd.safetensors'}",
            "--heads", str(encoder_files / "heads.safetensors"), "--inputs", str(encoder_files / "inputs.safetensors"),
            "--out", str(out_dir / "out.safetensors"), "--steps", "1", *extra]  # later flags win: the case's own
    code, err = _run_in_process(argv, capsys)
    _assert_refused(code, err, out_dir, f"adapt {case}")


def test_adapt_runs_on_the_valid_encoder_files(encoder_files: Path, tmp_path: Path) -> None:
    """The control: the same command without a wrong value succeeds (so the cases above fail for their value)."""
    out = tmp_path / "out.safetensors"
    assert main(["adapt", "--method", "adarank_ta", "--model", "mf-vit-tiny", "--base", str(encoder_files / "base.safetensors"),
                 "--expert", f"cars={encoder_files / 'cars.safetensors'}", "--expert", f"dtd={encoder_files / 'dtd.safetensors'}",
                 "--heads", str(encoder_files / "heads.safetensors"), "--inputs", str(encoder_files / "inputs.safetensors"),
                 "--out", str(out), "--steps", "1"]) == 0
    assert out.exists()


@pytest.fixture(scope="module")
def extra_files(files: Files) -> Files:
    """The few extra inputs some argv cases read (one task's features, wider features, odd tables)."""
    save_file({"only": torch.randn(8, 4)}, files.root / "one_task.safetensors")
    save_file({"x": torch.randn(8, 7)}, files.root / "wide.safetensors")
    (files.root / "table.pt").write_bytes(files.results.read_bytes())
    pd.DataFrame({"a": [1], "b": ["x"]}).to_parquet(files.root / "other.parquet")
    pd.read_parquet(files.results).assign(value=["high"]).to_parquet(files.root / "text_values.parquet")
    return files


@pytest.mark.parametrize("case", list(ARGV_CASES))
def test_wrong_argument_values(extra_files: Files, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / ("out.parquet" if case.startswith("route predict") else "out.safetensors")
    before = {path: path.stat().st_mtime_ns for path in extra_files.root.glob("*.*")}
    code, err = _run_in_process(ARGV_CASES[case](extra_files, out), capsys)
    _assert_refused(code, err, out_dir, case, lines=2 if case in ("no command", "unknown command", "merge missing --out") else 1)
    assert {path: path.stat().st_mtime_ns for path in extra_files.root.glob("*.*")} == before, f"{case}: an input changed"


def test_an_internal_error_is_one_line_and_its_traceback_shows_with_debug(files: Files, monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import mergeflow.evaluation.results as results

    def broken(table: object, metric: str) -> object:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(results, "pivot", broken)
    assert main(["results", "--path", str(files.results)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (ZeroDivisionError: a bug)" in err and "--debug" in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "results", "--path", str(files.results)])


SUBPROCESS_CASES = ("merge --expert", "results --path", "check-params", "route predict --router")


@pytest.mark.parametrize(("argument", "kind"), [(a, k) for a in SUBPROCESS_CASES for k in ("directory", "not-utf8", "mutated:offsets-past-end")])
def test_real_processes_print_one_line(files: Files, argument: str, kind: str, tmp_path: Path) -> None:
    """As a user runs it: a fresh interpreter, exit 2 and one line, no traceback, nothing written."""
    if argument == "check-params" and kind.startswith("mutated:"):
        kind = "text"
    like_name, build = FILE_ARGUMENTS[argument]
    like = files.base if kind.startswith("mutated:") else getattr(files, like_name)
    bad = files.bad(kind, like, "proc-" + _suffixed(argument, kind))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / ("out.parquet" if "predict" in argument else "out.safetensors")
    proc = subprocess.run([sys.executable, "-m", "mergeflow.cli", *build(files, bad, out)], capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=300)
    err = proc.stderr.decode("utf-8")  # a message that is not UTF-8 (raw bytes of the file) fails here
    _assert_refused(proc.returncode, err, out_dir, f"{argument} <{kind}> (subprocess)",
                    lines=None if argument == "check-params" else 1)
