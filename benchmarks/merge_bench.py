"""Streaming-merge benchmark: wall time and peak RSS per method next to the time of reading every checkpoint once.

Not a test. It writes T experts shaped like an open_clip image encoder to disk (float32, random task vectors
of realistic size), then runs every method in a fresh subprocess (so one method's memory never hides
another's: peak RSS is the child's own ``ru_maxrss``, taken by a small trampoline process, see
``PEAK_TRAMPOLINE``) and prints

    method | wall s | peak RSS MB | x read | x read+write | passes

where ``wall s`` is the merge itself (``merging.streaming.merge_files``, output written to disk), ``x read``
divides it by the time a fresh process takes to read the base and every expert once, tensor by tensor, and
``x read+write`` by that plus the time to write one model-sized file (the least any merge must do: read
everything once, write its output once). ``passes`` counts how many times the merge read every expert (counted
in the child by wrapping ``StreamingVectors.read``): TIES-based methods three (two radix-select passes for the
exact thresholds, the sign votes counted on the second, the output; four before issue 17), EMR two, the others
one. Reads usually come from the page cache (the files were just written); writes go through the page cache to disk.

Examples::

    python benchmarks/merge_bench.py                                   # 8 x ViT-B/32 (87.8 M params), all methods
    python benchmarks/merge_bench.py --methods task_arithmetic,ties,tall_ta,emr
    python benchmarks/merge_bench.py --experts 8 --preset vit-b-32 --dir /data/bench --keep
    python benchmarks/merge_bench.py --experts 3 --preset tiny --methods ties,tall_ties   # a smoke run, seconds

The documented large run (not part of any test; ~24 GB of weights on a 24 GB machine, so it only works
because nothing holds more than one tensor per expert; it needs ~26 GB of free disk and takes a while)::

    python benchmarks/merge_bench.py --experts 20 --preset vit-l-14 --methods ties,tall_ties --dir /data/bench20

Against FusionBench (issue 17, item 7): ``--against fusionbench --fusionbench-python PY`` runs, per method FusionBench
implements (task_arithmetic, ties, tall_ta, emr, tsv_m, iso_c, iso_cts), two whole processes on the same files with
the same OMP/MKL thread count (``--threads``, default 1), the order alternating: the ``mergeflow merge`` CLI, and
``fusionbench_side.py`` under FusionBench's interpreter (its own ``run(modelpool)``, mergeflow's default
hyperparameters mapped to FusionBench's names). It prints wall s and peak RSS of both, FB / mf, FusionBench's
in-process merge time, and how far the outputs are apart, and writes the table to
``benchmarks/results/merge_bench_vs_fusionbench_<preset>_x<experts>_t<threads>.txt``. FusionBench is never a
dependency of mergeflow; install it in a venv of its own (what its merging code imports, found by trying)::

    python3 -m venv /tmp/fbvenv
    /tmp/fbvenv/bin/pip install torch==2.14.1 safetensors            # the torch mergeflow's venv has
    /tmp/fbvenv/bin/pip install --no-deps fusion_bench-0.2.33-py3-none-any.whl   # or: pip download fusion_bench==0.2.33
    /tmp/fbvenv/bin/pip install packaging omegaconf transformers accelerate datasets bidict hydra-core \
        lightning_utilities lightning peft
    python benchmarks/merge_bench.py --against fusionbench --fusionbench-python /tmp/fbvenv/bin/python --preset tiny
    python benchmarks/merge_bench.py --against fusionbench --fusionbench-python /tmp/fbvenv/bin/python \
        --methods task_arithmetic,emr --threads 2

Mind the memory: FusionBench holds every expert whole (TA ~5 GB, EMR ~8 GB, TIES ~22 GB peak at 8 x ViT-B/32).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ALL_METHODS = (
    "weight_averaging",
    "task_arithmetic",
    "ties",
    "tall_ta",
    "tall_ties",
    "consensus_ta",
    "emr",
    "tsv_m",
    "cart",
    "iso_c",
    "iso_cts",
)

# (width, layers, patch, image size, output dim) of open_clip's image towers.
# "tiny" (a few hundred thousand parameters) is for smoke runs of the script itself, not for figures.
PRESETS = {"vit-b-32": (768, 12, 32, 224, 512), "vit-l-14": (1024, 24, 14, 224, 768), "tiny": (128, 2, 16, 64, 64)}


def encoder_shapes(preset: str) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of open_clip's ``visual`` tower (ViT-B/32: 87,849,216 parameters)."""
    width, layers, patch, image, output = PRESETS[preset]
    grid = image // patch
    shapes: dict[str, tuple[int, ...]] = {
        "visual.class_embedding": (width,),
        "visual.positional_embedding": (grid * grid + 1, width),
        "visual.conv1.weight": (width, 3, patch, patch),
        "visual.ln_pre.weight": (width,),
        "visual.ln_pre.bias": (width,),
    }
    for layer in range(layers):
        prefix = f"visual.transformer.resblocks.{layer}."
        shapes.update(
            {
                prefix + "ln_1.weight": (width,),
                prefix + "ln_1.bias": (width,),
                prefix + "attn.in_proj_weight": (3 * width, width),
                prefix + "attn.in_proj_bias": (3 * width,),
                prefix + "attn.out_proj.weight": (width, width),
                prefix + "attn.out_proj.bias": (width,),
                prefix + "ln_2.weight": (width,),
                prefix + "ln_2.bias": (width,),
                prefix + "mlp.c_fc.weight": (4 * width, width),
                prefix + "mlp.c_fc.bias": (4 * width,),
                prefix + "mlp.c_proj.weight": (width, 4 * width),
                prefix + "mlp.c_proj.bias": (width,),
            }
        )
    shapes.update({"visual.ln_post.weight": (width,), "visual.ln_post.bias": (width,), "visual.proj": (width, output)})
    return shapes


def write_checkpoints(directory: Path, preset: str, experts: int) -> tuple[Path, dict[str, Path]]:
    """base.safetensors and expert_{i}.safetensors, written one tensor at a time (never a whole model in memory)."""
    import torch

    from mergeflow.statedict.writer import SafetensorsWriter

    shapes = encoder_shapes(preset)
    layout = [(key, torch.float32, shape) for key, shape in shapes.items()]
    base_path = directory / "base.safetensors"
    with SafetensorsWriter(base_path, layout) as writer:
        for index, (key, shape) in enumerate(shapes.items()):
            writer.write(key, torch.randn(shape, generator=torch.Generator().manual_seed(index)) * 0.02)
    paths = {}
    for task in range(experts):
        paths[f"task{task}"] = directory / f"expert_{task}.safetensors"
        with SafetensorsWriter(paths[f"task{task}"], layout) as writer:
            for index, (key, shape) in enumerate(shapes.items()):
                generator = torch.Generator().manual_seed(index)
                base = torch.randn(shape, generator=generator) * 0.02
                generator.manual_seed(1_000_003 * (task + 1) + index)
                writer.write(key, base + torch.randn(shape, generator=generator) * 1e-3)
    return base_path, paths


def _child(args: argparse.Namespace) -> None:
    """Runs inside the fresh subprocess: one read pass or one merge; prints its wall time as JSON."""
    from mergeflow.merging.streaming import merge_files
    from mergeflow.statedict.lazy import LazySafetensors
    from mergeflow.statedict.writer import SafetensorsWriter

    spec = json.loads(args.child)
    _count_reads()
    start = time.perf_counter()
    if spec["method"] == "write":
        with LazySafetensors(spec["base"]) as handle:
            layout = [(key, handle.dtype(key), handle.shape(key)) for key in handle.keys]
            with SafetensorsWriter(spec["out"], layout) as writer:
                for key in handle.keys:
                    writer.write(key, handle.get(key, check_finite=False))
    elif spec["method"] == "read":
        total = 0
        for path in [spec["base"], *spec["experts"].values()]:
            with LazySafetensors(path) as handle:
                for key in handle.keys:
                    total += handle.get(key, check_finite=False).numel()
    else:
        merge_files(spec["method"], spec["base"], spec["experts"], spec["out"])
    wall = time.perf_counter() - start
    print(json.dumps({"wall": wall, "passes": max(READS.values(), default=0)}))


READS: dict[str, int] = {}  # key -> times the merge read it from every expert (one pass reads every key once)


def _count_reads() -> None:
    """Wrap ``StreamingVectors.read`` to count the passes a merge makes over the experts (negligible cost)."""
    from mergeflow.merging.streaming import StreamingVectors

    read = StreamingVectors.read

    def counted(self, key):  # type: ignore[no-untyped-def]
        READS[key] = READS.get(key, 0) + 1
        return read(self, key)

    StreamingVectors.read = counted  # type: ignore[method-assign]


def _measure(spec: dict[str, object]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, passes over the experts) of one step in a fresh interpreter."""
    _, peak, stdout = _run_process([sys.executable, __file__, "--child", json.dumps(spec)], dict(os.environ))
    result = json.loads(stdout.strip().splitlines()[-1])
    return result["wall"], peak, result["passes"]


# Started first, by this (large) process; it starts the measured command and reports that child's own wall time and
# ru_maxrss. Measuring the command as our direct child would be wrong: Linux carries the peak RSS of the process that
# forked over exec (``ru_maxrss`` of a child of a 3 GB parent is >= 3 GB, whatever the child does). The trampoline's
# own footprint (~15 MB) is what its child inherits instead.
PEAK_TRAMPOLINE = (
    "import json, os, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "process = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(process.pid, 0)\n"
    "wall = time.perf_counter() - start\n"
    "with open(sys.argv[1], 'w') as report:\n"
    "    json.dump({'wall': wall, 'peak_kb': usage.ru_maxrss, 'exit': os.waitstatus_to_exitcode(status)}, report)\n"
)


def _spawn_measured(command: list[str], out: Any, err: Any, env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit code) of ``command`` run through ``PEAK_TRAMPOLINE``; output to files, not
    pipes, so the child never blocks on a full pipe (FusionBench prints a line per key)."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        trampoline = subprocess.run([sys.executable, "-c", PEAK_TRAMPOLINE, str(report), *command], stdout=out, stderr=err,
                                    env=env, check=False)
        if not report.exists():
            raise SystemExit(f"the measuring trampoline failed (exit {trampoline.returncode})")
        result = json.loads(report.read_text())
    return result["wall"], result["peak_kb"] / 1024, result["exit"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experts", type=int, default=8, help="number of experts to write and merge (default 8)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="vit-b-32", help="encoder shape (default vit-b-32)")
    parser.add_argument("--methods", default=",".join(ALL_METHODS), help="comma-separated registry names (default: all 11)")
    parser.add_argument("--dir", help="where to write the checkpoints (default: a temporary directory, deleted afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints (and reuse them if --dir already has them)")
    parser.add_argument("--against", choices=["fusionbench"], help="time a peer's own implementation beside mergeflow's")
    parser.add_argument("--fusionbench-python", help="the interpreter of a FusionBench install (e.g. /tmp/fbvenv/bin/python)")
    parser.add_argument("--threads", type=int, default=1, help="--against: OMP/MKL threads for both tools (default 1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    if args.against and not args.fusionbench_python:
        parser.error("--against fusionbench needs --fusionbench-python PATH")
    if args.against and args.methods == ",".join(ALL_METHODS):
        args.methods = ",".join(FUSIONBENCH_METHODS)
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    if args.against and (outside := [name for name in methods if name not in FUSIONBENCH_METHODS]):
        parser.error(f"FusionBench does not implement {outside}; choose from {', '.join(FUSIONBENCH_METHODS)}")
    unknown = [name for name in methods if name not in ALL_METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(ALL_METHODS)}")
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="merge_bench_"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        base, experts = directory / "base.safetensors", {f"task{t}": directory / f"expert_{t}.safetensors" for t in range(args.experts)}
        if not (args.keep and base.exists() and all(path.exists() for path in experts.values())):
            base, experts = write_checkpoints(directory, args.preset, args.experts)
        params = sum(_numel(shape) for shape in encoder_shapes(args.preset).values())
        print(f"{args.experts} experts x {params / 1e6:.1f} M params ({args.preset}, float32) in {directory} "
              f"[written in {time.perf_counter() - start:.1f} s]; {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}")
        if args.against:
            _write_against_results(args, methods, base, experts, directory, params)
            return 0
        common = {"base": str(base), "experts": {name: str(path) for name, path in experts.items()}}
        read_wall, read_rss, _ = _measure({**common, "method": "read"})
        copy = directory / "out_write.safetensors"
        write_wall, write_rss, _ = _measure({**common, "method": "write", "out": str(copy)})
        write_wall -= read_wall / (args.experts + 1)  # the copy also read the base once
        copy.unlink(missing_ok=True)
        floor = read_wall + write_wall
        print(f"{'method':<18}{'wall s':>9}{'peak RSS MB':>13}{'x read':>8}{'x read+write':>14}{'passes':>8}")
        print(f"{'read (base+experts)':<18}{read_wall:>9.2f}{read_rss:>13.0f}{1.0:>8.2f}{read_wall / floor:>14.2f}{1:>8}")
        print(f"{'write (one model)':<18}{write_wall:>9.2f}{write_rss:>13.0f}{write_wall / read_wall:>8.2f}{write_wall / floor:>14.2f}{'-':>8}")
        for method in methods:
            out = directory / f"out_{method}.safetensors"
            wall, rss, passes = _measure({**common, "method": method, "out": str(out)})
            out.unlink(missing_ok=True)
            print(f"{method:<18}{wall:>9.2f}{rss:>13.0f}{wall / read_wall:>8.2f}{wall / floor:>14.2f}{passes:>8}", flush=True)
    finally:
        if not args.keep:
            if args.dir:  # only what this script wrote
                for path in [directory / "base.safetensors", *(directory / f"expert_{t}.safetensors" for t in range(args.experts))]:
                    path.unlink(missing_ok=True)
            else:
                shutil.rmtree(directory, ignore_errors=True)
    return 0


# --- --against fusionbench: whole processes of both tools on the same files (issue 17, item 7) -------------------

FUSIONBENCH_METHODS = ("task_arithmetic", "ties", "tall_ta", "emr", "tsv_m", "iso_c", "iso_cts")
FUSIONBENCH_SIDE = Path(__file__).with_name("fusionbench_side.py")
MERGEFLOW_CLI = "import sys; from mergeflow.cli import main; sys.exit(main())"


def _settings(method: str) -> list[str]:
    """mergeflow's default hyperparameters of ``method`` as --set KEY=VALUE pairs, given to both tools."""
    from mergeflow.merging.registry import resolve_hyperparameters

    pairs = []
    for key, value in resolve_hyperparameters(method).items():
        pairs += ["--set", f"{key}={'none' if value is None else value}"]
    return pairs


def _thread_env(threads: int, keep_pythonpath: bool) -> dict[str, str]:
    """The same thread count for both tools; FusionBench's side runs without mergeflow on its path."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if not keep_pythonpath:
        env.pop("PYTHONPATH", None)
    return env


def _run_process(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of one whole process, start-up included (``/usr/bin/time``'s view)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        wall, peak, returncode = _spawn_measured(command, out, err, env)
        out.seek(0)
        err.seek(0)
        if returncode != 0:
            raise ProcessFailed(f"{' '.join(command[:4])} ... failed (exit {returncode}):\n{err.read()[-4000:]}")
        return wall, peak, out.read()


class ProcessFailed(SystemExit):
    """A timed process exited non-zero: fatal for mergeflow's side; on FusionBench's side the row records it."""

    def last_line(self) -> str:
        lines = [line.strip(" │╭╰─") for line in str(self.code).splitlines() if line.strip(" │╭╰─")]
        errors = [line for line in lines if "Error" in line]
        return (errors[-1] if errors else lines[-1])[:160]


def _max_abs(a: Any, b: Any) -> float:
    """max |a - b| in float64 (0.0 for empty tensors)."""
    import torch

    if a.shape != b.shape:
        raise SystemExit(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.to(torch.float64) - b.to(torch.float64)).abs().max()) if a.numel() else 0.0


def compare_outputs(method: str, base: Path, tasks: list[str], mf_out: Path, fb_out: Path) -> str:
    """How far FusionBench's output is from mergeflow's, key by key (never two whole models in memory)."""
    import torch
    from safetensors import safe_open

    from mergeflow.merging.bank import task_key_delta
    from mergeflow.merging.bankfile import MaskBankFile

    with safe_open(str(fb_out), framework="pt") as fb, safe_open(str(base), framework="pt") as theta0:
        if method not in ("tall_ta", "emr"):
            with safe_open(str(mf_out), framework="pt") as mf:
                keys = list(mf.keys())
                if sorted(keys) != sorted(fb.keys()):
                    return "different keys"
                worst = max(_max_abs(mf.get_tensor(key), fb.get_tensor(key)) for key in keys)
                scale = max(_max_abs(mf.get_tensor(key), theta0.get_tensor(key)) for key in keys)
            return f"max|diff| {worst:.2e} (max|delta| {scale:.1e})"
        bank = MaskBankFile(mf_out)
        worst_model, mismatched, total, merged_diff = 0.0, 0, 0, 0.0
        fb_rescalers = fb.get_tensor("rescalers").tolist() if method == "emr" else [1.0] * len(tasks)
        for key in bank.keys:
            shared = bank.merged(key)
            if method == "emr":
                merged_diff = max(merged_diff, _max_abs(shared, fb.get_tensor(f"merged/{key}")))
            for index, task in enumerate(tasks):
                mask = bank.mask(task, key)
                mf_model = theta0.get_tensor(key) + task_key_delta(shared, mask, bank.rescalers[task])
                if method == "emr":  # FusionBench's EMRTaskModulator.apply: theta + unified * mask * rescaler
                    fb_mask = fb.get_tensor(f"mask/{task}/{key}")
                    fb_model = theta0.get_tensor(key) + fb.get_tensor(f"merged/{key}") * fb_mask * fb_rescalers[index]
                else:
                    fb_model = fb.get_tensor(f"{task}/{key}")
                    fb_mask = (fb_model - theta0.get_tensor(key)) != 0
                mismatched += int((mask != fb_mask.to(torch.bool)).sum())
                total += mask.numel()
                worst_model = max(worst_model, _max_abs(mf_model, fb_model))
        text = f"task models max|diff| {worst_model:.2e}; masks differ at {mismatched / max(total, 1):.2%}"
        if method == "emr":
            rescaler_diff = max(abs(bank.rescalers[task] - fb_rescalers[i]) for i, task in enumerate(tasks))
            text += f"; merged max|diff| {merged_diff:.2e}; rescalers max|diff| {rescaler_diff:.1e}"
        return text


def against_fusionbench(args: argparse.Namespace, methods: list[str], base: Path, experts: dict[str, Path],
                        directory: Path) -> list[str]:
    """Each method as two whole processes on the same files, the order alternating; returns the table's lines."""
    header = (f"{'method':<16}{'FB wall s':>10}{'FB peak RSS MB':>16}{'mf wall s':>10}{'mf peak RSS MB':>16}"
              f"{'FB / mf':>9}{'FB merge s':>12}  agreement (FusionBench vs mergeflow)")
    lines = [header]
    print(header, flush=True)
    expert_args = [f"{name}={path}" for name, path in experts.items()]
    for index, method in enumerate(methods):
        settings = _settings(method)
        mf_out, fb_out = directory / f"mf_{method}.safetensors", directory / f"fb_{method}.safetensors"
        mf_command = [sys.executable, "-c", MERGEFLOW_CLI, "merge", "--method", method, "--base", str(base),
                      *(part for pair in expert_args for part in ("--expert", pair)), "--out", str(mf_out), *settings]
        fb_command = [args.fusionbench_python, str(FUSIONBENCH_SIDE), "--method", method, "--base", str(base),
                      *(part for pair in expert_args for part in ("--expert", pair)), "--out", str(fb_out),
                      "--threads", str(args.threads), *settings]
        runs: dict[str, tuple[float, float, str]] = {}
        failed = ""
        order = [("mf", mf_command, True), ("fb", fb_command, False)]
        for side, command, keep_path in order if index % 2 else order[::-1]:  # FusionBench first on even rows
            try:
                runs[side] = _run_process(command, _thread_env(args.threads, keep_path))
            except ProcessFailed as error:
                if side == "mf":
                    raise
                failed = error.last_line()
        mf_wall, mf_rss, _ = runs["mf"]
        if failed:  # FusionBench's own implementation failed on these files: the row says so, the table goes on
            line = f"{method:<16}{'failed':>10}{'-':>16}{mf_wall:>10.2f}{mf_rss:>16.0f}{'-':>9}{'-':>12}  FusionBench failed: {failed}"
            (directory / f"mf_{method}.safetensors").unlink(missing_ok=True)
            lines.append(line)
            print(line, flush=True)
            continue
        fb_wall, fb_rss, fb_stdout = runs["fb"]
        fb_inner = json.loads(fb_stdout.strip().splitlines()[-1])
        agreement = compare_outputs(method, base, list(experts), mf_out, fb_out)
        mf_out.unlink(missing_ok=True)
        fb_out.unlink(missing_ok=True)
        line = (f"{method:<16}{fb_wall:>10.2f}{fb_rss:>16.0f}{mf_wall:>10.2f}{mf_rss:>16.0f}{fb_wall / mf_wall:>8.2f}x"
                f"{fb_inner['merge']:>12.2f}  {agreement}")
        lines.append(line)
        print(line, flush=True)
    return lines


def _write_against_results(args: argparse.Namespace, methods: list[str], base: Path, experts: dict[str, Path],
                           directory: Path, params: int) -> None:
    """Run the side-by-side table and write it, with the conditions it was measured under, to benchmarks/results/."""
    import platform

    fb_version = subprocess.run([args.fusionbench_python, "-c", "import importlib.metadata as m, torch; "
                                 "print(m.version('fusion_bench'), torch.__version__)"],
                                capture_output=True, text=True, env=_thread_env(args.threads, False)).stdout.strip()
    load_before = os.getloadavg()
    lines = against_fusionbench(args, methods, base, experts, directory)
    load_after = os.getloadavg()
    header = [
        f"merge_bench.py --against fusionbench --preset {args.preset} --experts {args.experts} --threads {args.threads}",
        f"date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {platform.platform()}; {os.cpu_count()} cpus; "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM",
        f"{args.experts} experts x {params / 1e6:.2f} M params ({args.preset}, float32); FusionBench {fb_version} "
        f"({args.fusionbench_python}); mergeflow with torch {_torch_version()} ({sys.executable})",
        f"load average (1 min) {load_before[0]:.1f} before the table, {load_after[0]:.1f} after it (this benchmark's own "
        "processes count in both: the experts were just written, and each merge uses --threads cores)",
        "whole processes (start-up, reading, merging, writing the output), one run each, the order alternating; "
        "peak RSS = the child's ru_maxrss (via a trampoline: see PEAK_TRAMPOLINE); 'FB merge s' = FusionBench's run(modelpool) alone; "
        "mergeflow = the `mergeflow merge` CLI; agreement compares the two outputs key by key "
        "(tall_ta: FusionBench's mask inferred as retrieved model != theta_0)",
        "",
    ]
    results = Path(__file__).with_name("results") / f"merge_bench_vs_fusionbench_{args.preset}_x{args.experts}_t{args.threads}.txt"
    results.write_text("\n".join(header + lines) + "\n")
    print(f"written {results}")


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


if __name__ == "__main__":
    sys.exit(main())
