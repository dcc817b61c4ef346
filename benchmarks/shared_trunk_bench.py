"""The shared-trunk L-curve (issue 17, item 4): routed serving that shares blocks < L vs the paper's design vs one
static model, for every split L = 0..blocks, in one run with the modes interleaved batch by batch.

Not a test. Two settings:

- ``--model suite``: the default suite's real artifacts under ``--root`` (read only): the tiny ViT, the TALL-TA bank,
  the weight-averaged routing model, the train/val/test splits; a ``mad`` router is fitted at every L on the
  features after block L (``route.samples`` per task, same seed and eps as ``calibrate``). Reported per L: routing
  accuracy and accuracy (task averages over the mixed test stream, as the results table), ms per input and the
  throughput ratio against ``task_arithmetic`` (one static model), beside the paper's design (the calibrated
  ``mad`` router on the final features, then each group's whole task model).
- ``--model vit-b-32``: routed_bench.py's random ViT-B/32 setting (random weights, masks, heads and inputs; routers
  fitted at every L on random per-task inputs, so routing is near random and batches hold nearly every task: the
  worst case for grouping). Accuracy means nothing there; only the throughput ratios are reported.

Writes ``benchmarks/results/shared_trunk_<model>.txt`` (suite, vit-b-32) (and prints it).

Examples::

    python benchmarks/shared_trunk_bench.py --model suite --root /work/main
    python benchmarks/shared_trunk_bench.py --model vit-b-32 --batches 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the stage helpers (tasks/)
sys.path.insert(0, str(ROOT / "benchmarks"))  # routed_bench's settings

@dataclass
class Mode:
    """One way of serving, with its accumulated wall time and predictions."""

    name: str
    serve: Callable  # type: ignore[type-arg]
    seconds: float = 0.0
    tasks: list[torch.Tensor] = field(default_factory=list)
    classes: list[torch.Tensor] = field(default_factory=list)


@dataclass
class Setting:
    module: torch.nn.Module
    routing: dict[str, torch.Tensor]
    base: dict[str, torch.Tensor]
    bank: object
    heads: list[torch.Tensor]
    tasks: list[str]
    paper_router: object
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    static: dict[str, torch.Tensor]
    images: torch.Tensor
    true_tasks: torch.Tensor
    labels: torch.Tensor | None
    calibration: Callable[[Callable[[torch.Tensor], list[torch.Tensor]]], list]  # type: ignore[type-arg]
    normalize: bool


def suite_setting(root: Path) -> Setting:
    os.chdir(root)  # the stage helpers read artifacts/ and params.yaml relative to the working directory
    from mergeflow.merging.bankfile import MaskBankFile
    from mergeflow.params import load_params
    from mergeflow.routing.router_file import load_router
    from mergeflow.routing.trunk_calibration import calibrate_every_split
    from tasks._artifacts import load_split_tensors
    from tasks._merge_inputs import load_base_visual
    from tasks._paths import merged_path, router_path
    from tasks._routing_inputs import load_encoder, load_heads, load_single_model, test_stream

    params = load_params()
    route, tasks = params.route, params.suite.tasks
    module, preprocess = load_encoder(params)
    router, _ = load_router(router_path("mad"))
    stream = test_stream(params)
    train = [load_split_tensors(task, "train")[1] for task in tasks]
    val = [load_split_tensors(task, "val")[1] for task in tasks]

    def calibration(extract: Callable[[torch.Tensor], list[torch.Tensor]]) -> list:  # type: ignore[type-arg]
        return calibrate_every_split("mad", tasks, train, val, extract, samples=route.samples, eps=route.eps, seed=route.seed,
                                     quantile=route.reject.quantile, normalize=route.normalize)

    return Setting(module, load_single_model(route.feature_model), load_base_visual(), MaskBankFile(merged_path("tall_ta")).load_packed(),
                   load_heads(tasks), tasks, router, preprocess, load_single_model("task_arithmetic"), stream.images, stream.tasks,
                   stream.labels, calibration, route.normalize)


def vit_setting(tasks: int, inputs: int) -> Setting:
    from routed_bench import vit_setting as routed_vit_setting

    from mergeflow.routing.trunk_calibration import calibrate_every_split

    module, averaged, base, bank, heads, router, preprocess, static, images, true_tasks = routed_vit_setting(torch.device("cpu"), tasks, inputs)
    generator = torch.Generator().manual_seed(7)
    size = images.shape[1]
    train = [torch.randint(0, 256, (16, size, size, 3), dtype=torch.uint8, generator=generator) for _ in bank.tasks]
    held_in = [torch.randint(0, 256, (4, size, size, 3), dtype=torch.uint8, generator=generator) for _ in bank.tasks]

    def calibration(extract: Callable[[torch.Tensor], list[torch.Tensor]]) -> list:  # type: ignore[type-arg]
        return calibrate_every_split(router.name, bank.tasks, train, held_in, extract, samples=8, eps=1e-4, seed=0, quantile=0.99)

    return Setting(module, averaged, base, bank, heads, list(bank.tasks), router, preprocess, static, images, true_tasks, None,
                   calibration, False)


def build_modes(setting: Setting, batch: int) -> tuple[list[Mode], int]:
    """static, the paper's design, and one shared-trunk mode per L (its router fitted at L); and the block count."""
    from mergeflow.merging.common import add_to_base
    from mergeflow.models.vit_split import SplitTower
    from mergeflow.routing.served import RoutedClassifier, StaticClassifier
    from mergeflow.routing.shared_trunk import SharedTrunkClassifier
    from mergeflow.routing.trunk_calibration import features_by_split

    tower = SplitTower(setting.module)
    bank = setting.bank

    def extract(images: torch.Tensor) -> list[torch.Tensor]:
        return features_by_split(tower, setting.routing, setting.preprocess, images, batch)

    start = time.perf_counter()
    calibrated = setting.calibration(extract)
    calibration_seconds = time.perf_counter() - start
    static = StaticClassifier(setting.module, setting.static, setting.heads, setting.preprocess)
    paper = RoutedClassifier(setting.module, setting.routing, lambda t: add_to_base(setting.base, bank.task_delta(t)),  # type: ignore[attr-defined]
                             setting.heads, setting.tasks, setting.paper_router, setting.preprocess,  # type: ignore[arg-type]
                             normalize_features=setting.normalize)

    def task_weights(task: int, keys: Collection[str]) -> dict[str, torch.Tensor]:
        return add_to_base({key: setting.base[key] for key in keys}, bank.task_delta(task, keys))  # type: ignore[attr-defined]

    modes = [Mode("static (task_arithmetic)", lambda x, t: static.predict(x, t)), Mode("paper (route final, 2 passes)", lambda x, t: paper.predict(x))]
    for split, fitted in enumerate(calibrated):
        server = SharedTrunkClassifier(setting.module, setting.routing, task_weights, setting.heads, setting.tasks, fitted.router,
                                       setting.preprocess, split, normalize_features=setting.normalize)
        modes.append(Mode(f"shared L={split}", lambda x, t, server=server: server.predict(x)))
    print(f"calibrated {len(calibrated)} splits in {calibration_seconds:.1f} s", flush=True)
    return modes, tower.blocks


def run(modes: list[Mode], images: torch.Tensor, true_tasks: torch.Tensor, batch: int, batches: int | None, warmup: int) -> int:
    """Serve batch by batch, every mode on the same batch in turn (interleaved: load drifts hit every mode alike)."""
    chunks = [(images[i : i + batch], true_tasks[i : i + batch]) for i in range(0, len(images), batch)]
    chunks = chunks if batches is None else chunks[: warmup + batches]
    with torch.no_grad():
        for index, (x, t) in enumerate(chunks):
            for mode in modes:
                start = time.perf_counter()
                prediction = mode.serve(x, t)
                elapsed = time.perf_counter() - start
                if index >= warmup:
                    mode.seconds += elapsed
                mode.tasks.append(prediction.tasks)
                mode.classes.append(prediction.classes)
            print(f"batch {index + 1}/{len(chunks)}", flush=True)
    return sum(len(x) for x, _ in chunks[warmup:])


def table(setting: Setting, modes: list[Mode], timed: int, header: list[str]) -> str:
    tasks = setting.tasks
    served = sum(len(c) for c in modes[0].classes)
    truth_tasks = setting.true_tasks[:served]
    static_seconds = modes[0].seconds
    lines = [*header, ""]
    accuracy_known = setting.labels is not None
    lines.append(f"{'mode':<32}{'routing acc':>12}{'accuracy':>10}{'ms/input':>10}{'x static':>10}{'groups/batch':>14}")
    for mode in modes:
        predicted_tasks, classes = torch.cat(mode.tasks), torch.cat(mode.classes)
        if accuracy_known:
            assert setting.labels is not None
            right = (predicted_tasks == truth_tasks) & (classes == setting.labels[:served])
            routed = predicted_tasks == truth_tasks
            accuracy = sum(float(right[truth_tasks == t].float().mean()) for t in range(len(tasks))) / len(tasks)
            routing = sum(float(routed[truth_tasks == t].float().mean()) for t in range(len(tasks))) / len(tasks)
            acc_text, route_text = f"{100 * accuracy:.2f}", ("-" if mode is modes[0] else f"{100 * routing:.2f}")
        else:
            acc_text = route_text = "n/a"
        groups = sum(len(torch.unique(t)) for t in mode.tasks) / len(mode.tasks)
        lines.append(f"{mode.name:<32}{route_text:>12}{acc_text:>10}{1e3 * mode.seconds / timed:>10.3f}"
                     f"{static_seconds / mode.seconds:>10.3f}{groups:>14.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("suite", "vit-b-32"), default="suite")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose artifacts/ and params.yaml the suite reads")
    parser.add_argument("--batch", type=int, default=128, help="inputs per batch (default 128, as the paper)")
    parser.add_argument("--batches", type=int, default=None, help="timed batches (default: the whole suite stream; vit-b-32: 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches first (default 1)")
    parser.add_argument("--tasks", type=int, default=8, help="tasks in the vit-b-32 bank (default 8)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a CPU shared with other workers, more threads wait on each other)")
    parser.add_argument("--note", default="", help="a line for the header (e.g. the machine's load)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if args.model == "suite":
        setting = suite_setting(args.root.resolve())
        batches = args.batches
    else:
        batches = args.batches or 2
        setting = vit_setting(args.tasks, (args.warmup + batches) * args.batch)
    modes, blocks = build_modes(setting, args.batch)
    timed = run(modes, setting.images, setting.true_tasks, args.batch, batches, args.warmup)
    header = [
        f"shared-trunk L-curve, {args.model}: {blocks} blocks, batch {args.batch}, {timed} timed inputs per mode "
        f"({args.warmup} warm-up batch untimed), CPU, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "Machine under load from other workers (2 CPUs shared): timings are indicative; the ratios are measured in the same",
        "run with the modes interleaved batch by batch (every mode serves batch i before any serves batch i+1).",
        "x static = static seconds / mode seconds (throughput ratio). Accuracy and routing accuracy: task averages.",
    ]
    if args.note:
        header.append(args.note)
    if setting.labels is None:
        header.append("Random weights, masks, heads and inputs: accuracy is meaningless here; only the throughput ratios count.")
    text = table(setting, modes, timed, header)
    print(text)
    out = ROOT / "benchmarks" / "results" / f"shared_trunk_{args.model}.txt"
    out.write_text(text + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
