"""Routed group-batch inference (MAD) vs one static merged model: throughput at a fixed batch size.

Not a test. Two settings:

- ``--model suite``: the default suite's real artifacts (run the pipeline first): the tiny ViT, the TALL-TA bank,
  the weight-averaged routing model, the calibrated ``mad`` router and the mixed test stream; the static model is
  ``task_arithmetic``.
- ``--model vit-b-32``: open_clip ViT-B/32's image encoder (87.8 M parameters, random weights: no download), a
  bit-packed bank of ``--tasks`` random masks (keep fraction 0.3) over a random shared vector, random heads and
  random 224-pixel inputs routed by a router fitted on random features, so every batch holds all tasks (the
  worst case for grouping).

Per setting it prints inputs per second, milliseconds per input and the routed/static throughput ratio, and splits
the routed time into routing (the feature pass + router), rebuilding task models from the bank, and the grouped
forward passes (the rest). MAD serves an input with two forward passes (routing features, then its task's model) where the
static model needs one, so the ratio is at most about 0.5 unless rebuilding is free and the model is tiny.

Examples::

    python benchmarks/routed_bench.py --model suite
    python benchmarks/routed_bench.py --model vit-b-32 --batches 3
    python benchmarks/routed_bench.py --model vit-b-32 --device cuda --batches 20
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the stage helpers (tasks/) load the suite's artifacts


class Timer:
    """Accumulates wall time of wrapped calls (synchronising CUDA so GPU time is counted where it is spent)."""

    def __init__(self, device: torch.device) -> None:
        self.seconds = 0.0
        self.device = device

    def wrap(self, function: Callable) -> Callable:  # type: ignore[type-arg]
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            _sync(self.device)
            start = time.perf_counter()
            result = function(*args, **kwargs)
            _sync(self.device)
            self.seconds += time.perf_counter() - start
            return result

        return timed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to(weights: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in weights.items()}


def suite_setting(device: torch.device):  # type: ignore[no-untyped-def]
    """(module, feature weights, base, packed bank, heads, router, preprocess, static weights, batches of images)."""
    import os

    os.chdir(ROOT)
    from mergeflow.merging.bankfile import MaskBankFile
    from mergeflow.params import load_params
    from mergeflow.routing.router_file import load_router
    from tasks._merge_inputs import load_base_visual
    from tasks._paths import merged_path, router_path
    from tasks._routing_inputs import load_encoder, load_heads, load_single_model, test_stream

    params = load_params()
    module, preprocess = load_encoder(params)
    bank = MaskBankFile(merged_path("tall_ta")).load_packed()
    router, _ = load_router(router_path("mad"))
    stream = test_stream(params)
    return (module, load_single_model(params.route.feature_model), load_base_visual(), bank, load_heads(params.suite.tasks),
            router, preprocess, load_single_model("task_arithmetic"), stream.images, stream.tasks)


def vit_setting(device: torch.device, tasks: int, inputs: int):  # type: ignore[no-untyped-def]
    from mergeflow.merging.bankfile import PackedMaskBank
    from mergeflow.models.backbone import create_clip, preprocess_config
    from mergeflow.routing.routers import fit_router
    from mergeflow.routing.served import Preprocess
    from mergeflow.statedict.bitpack import pack_bits

    torch.manual_seed(0)
    clip = create_clip("ViT-B-32")
    module = clip.visual
    base = {key: value.detach().clone() for key, value in module.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    merged = {key: 1e-3 * torch.randn(value.shape, generator=generator) for key, value in base.items() if value.is_floating_point()}
    names = [f"task{t}" for t in range(tasks)]
    packed = [{key: pack_bits(torch.rand(value.shape, generator=generator) < 0.3) for key, value in merged.items()} for _ in names]
    bank = PackedMaskBank(names, merged, packed, {key: tuple(value.shape) for key, value in merged.items()}, dict.fromkeys(names, 1.0))
    heads = [torch.nn.functional.normalize(torch.randn(10, module.output_dim, generator=generator), dim=-1) for _ in names]
    width = module.output_dim
    router = fit_router("euclidean", names, [torch.randn(8, width, generator=generator) for _ in names])
    size, mean, std = preprocess_config(clip)
    images = torch.randint(0, 256, (inputs, size, size, 3), dtype=torch.uint8, generator=generator)
    averaged = {key: value + (merged[key] if key in merged else 0) for key, value in base.items()}
    return (module, averaged, base, bank, heads, router, Preprocess(size, tuple(mean), tuple(std)), averaged, images,
            torch.arange(inputs) % tasks)


def run(setting, device: torch.device, batch: int, batches: int, warmup: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from mergeflow.merging.bankfile import PackedMaskBank
    from mergeflow.merging.common import add_to_base
    from mergeflow.routing.routers import Router
    from mergeflow.routing.served import RoutedClassifier, StaticClassifier

    module, feature_weights, base, bank, heads, router, preprocess, static_weights, images, true_tasks = setting
    module = module.to(device)
    base, feature_weights, static_weights = _to(base, device), _to(feature_weights, device), _to(static_weights, device)
    bank = PackedMaskBank(bank.tasks, _to(bank.merged, device), [_to(masks, device) for masks in bank.packed], bank.shapes, bank.rescalers)
    heads = [head.to(device) for head in heads]
    router = Router.from_state(router.name, router.tasks, _to(router.state(), device))
    rebuild, routing = Timer(device), Timer(device)
    task_weights = rebuild.wrap(lambda t: add_to_base(base, bank.task_delta(t)))
    routed = RoutedClassifier(module, feature_weights, task_weights, heads, bank.tasks, router, preprocess)
    routed.route = routing.wrap(routed.route)  # type: ignore[method-assign]
    static = StaticClassifier(module, static_weights, heads, preprocess)
    needed = (warmup + batches) * batch
    if len(images) < needed:
        repeats = -(-needed // len(images))
        images, true_tasks = images.repeat(repeats, 1, 1, 1), true_tasks.repeat(repeats)
    chunks = [(images[i * batch : (i + 1) * batch].to(device), true_tasks[i * batch : (i + 1) * batch].to(device))
              for i in range(warmup + batches)]
    results = {}
    for name, serve in (("static", lambda x, t: static.predict(x, t)), ("routed", lambda x, t: routed.predict(x))):
        for x, t in chunks[:warmup]:
            serve(x, t)
        rebuild.seconds = routing.seconds = 0.0
        _sync(device)
        start = time.perf_counter()
        for x, t in chunks[warmup:]:
            serve(x, t)
        _sync(device)
        results[name] = (time.perf_counter() - start) / (batches * batch)
        if name == "routed":
            results["routing"] = routing.seconds / (batches * batch)
            results["rebuild"] = rebuild.seconds / (batches * batch)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("suite", "vit-b-32"), default="suite", help="which setting (default suite)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--batch", type=int, default=128, help="inputs per batch (default 128, as the paper)")
    parser.add_argument("--batches", type=int, default=10, help="timed batches per mode (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches first (default 1)")
    parser.add_argument("--tasks", type=int, default=8, help="tasks in the vit-b-32 bank (default 8)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    setting = suite_setting(device) if args.model == "suite" else vit_setting(device, args.tasks, (args.warmup + args.batches) * args.batch)
    with torch.no_grad():
        result = run(setting, device, args.batch, args.batches, args.warmup)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.model}, batch {args.batch}, {args.batches} timed batches per mode, {name}")
    print(f"{'mode':<10}{'inputs/s':>12}{'ms/input':>12}{'routing ms':>12}{'rebuild ms':>12}")
    for mode in ("static", "routed"):
        seconds = result[mode]
        routing = f"{1e3 * result['routing']:.3f}" if mode == "routed" else "-"
        rebuild = f"{1e3 * result['rebuild']:.3f}" if mode == "routed" else "-"
        print(f"{mode:<10}{1 / seconds:>12.1f}{1e3 * seconds:>12.3f}{routing:>12}{rebuild:>12}")
    print(f"routed / static throughput: {result['static'] / result['routed']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
