"""Cost of one test-time adaptation step: AdaRank (masks + layer-wise lambda) vs AdaMerging (layer-wise lambda).

Not a test. A step rebuilds the merged weights from the learnable parameters, runs one unlabelled batch per task
forward and backward, and takes one Adam step; this script times steps of each method on the same inputs and
prints the median and the ratio to AdaMerging. Settings:

- ``--model suite``: the default suite's tiny ViT, its real task vectors and heads (run the pipeline first).
- ``--model suite-random``: the suite's architecture with random weights and task vectors (no pipeline run needed).
- ``--model vit-b-32``: open_clip ViT-B/32's image encoder (87.8 M parameters, random weights: no download), 8
  random task vectors of realistic size, random heads, random 224-pixel inputs (the decomposition's SVDs are done
  once before timing and are not counted).

Examples::

    python benchmarks/adapt_bench.py --model suite --steps 20
    python benchmarks/adapt_bench.py --model vit-b-32 --steps 2 --batch 4 --methods adamerging,adarank_ta
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the stage helpers (tasks/) load the suite's artifacts

METHODS = {"adamerging": {"prior": 0.3}, "adarank_ta": {"prior": 0.3, "rank": 1.0}, "adarank_cart": {"prior": 2.3, "rank": 0.16}}


def suite_setting(batch: int):  # type: ignore[no-untyped-def]
    import os

    os.chdir(ROOT)
    from mergeflow.adaptation.batches import batch_sampler
    from mergeflow.params import load_params
    from mergeflow.routing.served import SwappableEncoder
    from tasks._adapt_inputs import unlabelled_pools
    from tasks._merge_inputs import load_base_visual, load_task_vectors
    from tasks._routing_inputs import load_encoder, load_heads

    params = load_params()
    module, preprocess = load_encoder(params)
    encoder = SwappableEncoder(module)
    pools = unlabelled_pools(params, preprocess, 1.0, 0)
    return (load_base_visual(), load_task_vectors(params.suite.tasks), load_heads(params.suite.tasks),
            lambda state, pixels: encoder(state, pixels), batch_sampler(pools, batch, 0))


def vit_setting(batch: int, tasks: int, name: str = "ViT-B-32"):  # type: ignore[no-untyped-def]
    from mergeflow.models.backbone import create_clip
    from mergeflow.routing.served import SwappableEncoder

    torch.manual_seed(0)
    module = create_clip(name).visual
    encoder = SwappableEncoder(module)
    base = {key: value.detach().clone() for key, value in module.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    vectors = {f"task{t}": {key: 1e-3 * torch.randn(value.shape, generator=generator)
                            for key, value in base.items() if value.is_floating_point()} for t in range(tasks)}
    heads = [torch.nn.functional.normalize(torch.randn(10, module.output_dim, generator=generator), dim=-1) for _ in range(tasks)]
    size = module.image_size[0] if isinstance(module.image_size, (tuple, list)) else module.image_size
    inputs = torch.randn(tasks, batch, 3, size, size, generator=generator)
    return base, vectors, heads, lambda state, pixels: encoder(state, pixels), lambda step, task: inputs[task]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("suite", "suite-random", "vit-b-32"), default="suite", help="which setting (default suite)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per method (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--batch", type=int, default=16, help="inputs per task per step (default 16, as the papers)")
    parser.add_argument("--tasks", type=int, default=8, help="tasks in the vit-b-32 setting (default 8)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, first is the reference (default {','.join(METHODS)})")
    args = parser.parse_args(argv)
    from mergeflow.adaptation.loop import adapt
    from mergeflow.adaptation.methods import build_adaptive

    if args.model == "suite":
        base, vectors, heads, forward, batches = suite_setting(args.batch)
    elif args.model == "suite-random":
        base, vectors, heads, forward, batches = vit_setting(args.batch, args.tasks, "mf-vit-minilm")
    else:
        base, vectors, heads, forward, batches = vit_setting(args.batch, args.tasks)
    rows = []
    for method in args.methods.split(","):
        settings = METHODS[method]
        start = time.perf_counter()
        model = build_adaptive(method, base, vectors, **settings)
        built = time.perf_counter() - start
        seconds = adapt(model, forward, heads, batches, args.warmup + args.steps).seconds[args.warmup:]
        rows.append((method, statistics.median(seconds), built))
    reference = rows[0][1]
    print(f"{args.model}, {len(heads)} tasks x {args.batch} inputs per step, {args.steps} timed steps, "
          f"CPU, {torch.get_num_threads()} threads")
    print(f"{'method':<16}{'s/step':>10}{'x ' + rows[0][0]:>14}{'setup s':>10}")
    for method, median, built in rows:
        print(f"{method:<16}{median:>10.3f}{median / reference:>14.2f}{built:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
