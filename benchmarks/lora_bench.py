"""LoRA serving at K = 1 (every input served by one expert, as MAD routes): grouped vs mixing vs one static model.

Not a test. A ``MixedEncoder`` over E random LoRA experts (rank ``--rank`` on every ``c_fc``/``c_proj`` layer, as
TR-Merging's vision experts) serves batches whose coefficient rows are one-hot, spread over every expert (the worst
case for grouping: E groups per batch):

- ``static``: the plain encoder, no adapters (one static merged model: the floor);
- ``grouped``: the default serving path for one-hot rows, one forward pass per group through its expert alone,
  W x + s B (A x) per adapted layer (``group_update="low_rank"``);
- ``grouped-merged``: the same groups through the merged weights W + s B A (``group_update="merged"``);
- ``mixing``: the per-token mixing path (``grouped=False``): every used expert's update for every token, mixed per input.

The modes take turns on every batch (so a change of machine load hits them alike). It prints milliseconds per input and each mode's time relative to ``static`` measured in the same run (the issue's
target: grouped <= 1.5x static at K = 1). Models: ``--model tiny`` (mergeflow's mf-vit-tiny, 32-pixel inputs) or
``--model vit-b-32`` (open_clip ViT-B/32's image encoder, random weights: no download, 224-pixel inputs).

Examples::

    python benchmarks/lora_bench.py --model tiny --batches 3 --batch 16        # a smoke run, seconds
    python benchmarks/lora_bench.py --model vit-b-32 --experts 8 --batch 128 --batches 5
    python benchmarks/lora_bench.py --model vit-b-32 --device cuda --batches 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MODES = ("static", "grouped", "grouped-merged", "mixing")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setting(model: str, experts: int, rank: int):  # type: ignore[no-untyped-def]
    """(encoder, factor bank, image size) with random experts on every c_fc / c_proj linear layer."""
    from mergeflow.lora.bank import stack_factors
    from mergeflow.models.backbone import create_clip, preprocess_config

    torch.manual_seed(0)
    clip = create_clip("mf-vit-tiny" if model == "tiny" else "ViT-B-32")
    encoder = clip.visual.eval()
    size, _, _ = preprocess_config(clip)
    generator = torch.Generator().manual_seed(1)
    layers = {name: module for name, module in encoder.named_modules()
              if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in ("c_fc", "c_proj")}
    factors = [
        {name: (0.02 * torch.randn(rank, layer.in_features, generator=generator),
                0.02 * torch.randn(layer.out_features, rank, generator=generator)) for name, layer in layers.items()}
        for _ in range(experts)
    ]
    bank = stack_factors([f"task{e}" for e in range(experts)], factors, [2.0] * experts)
    return encoder, bank, size


def run(model: str, device: torch.device, experts: int, rank: int, batch: int, batches: int, warmup: int) -> dict[str, float]:
    from mergeflow.lora.mixed_encoder import MixedEncoder

    encoder, bank, size = setting(model, experts, rank)
    served = {
        "grouped": MixedEncoder(encoder, bank, device=device),
        "grouped-merged": MixedEncoder(encoder, bank, device=device, group_update="merged"),
        "mixing": MixedEncoder(encoder, bank, device=device, grouped=False),
    }
    static = encoder.to(device)
    generator = torch.Generator().manual_seed(2)
    chunks = []
    for _ in range(warmup + batches):
        pixels = torch.randn(batch, 3, size, size, generator=generator)
        one_hot = F.one_hot(torch.randint(0, experts, (batch,), generator=generator), experts).float()
        chunks.append((pixels, one_hot))
    modes = {
        "static": lambda pixels, rows: static(pixels.to(device)).cpu(),
        **served,  # a MixedEncoder is called with (pixels, coefficient rows)
    }
    results = dict.fromkeys(MODES, 0.0)
    for index, (pixels, rows) in enumerate(chunks):  # the modes take turns on every batch: a load change hits all
        for name in MODES:
            _sync(device)
            start = time.perf_counter()
            modes[name](pixels, rows)
            _sync(device)
            if index >= warmup:
                results[name] += (time.perf_counter() - start) / (batches * batch)
    reference = chunks[0]
    check = (served["grouped"](*reference) - served["mixing"](*reference)).abs().max().item()
    results["max |grouped - mixing|"] = check
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("tiny", "vit-b-32"), default="vit-b-32", help="which encoder (default vit-b-32)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--experts", type=int, default=8, help="LoRA experts in the bank (default 8)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16)")
    parser.add_argument("--batch", type=int, default=128, help="inputs per batch (default 128)")
    parser.add_argument("--batches", type=int, default=5, help="timed batches per mode (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches first (default 1)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    with torch.no_grad():
        result = run(args.model, device, args.experts, args.rank, args.batch, args.batches, args.warmup)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.model}, {args.experts} experts of rank {args.rank}, K = 1 (one-hot rows over every expert), batch {args.batch}, "
          f"{args.batches} timed batches per mode, {name}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'mode':<16}{'ms/input':>12}{'x static':>10}")
    for mode in MODES:
        print(f"{mode:<16}{1e3 * result[mode]:>12.3f}{result[mode] / result['static']:>10.2f}")
    print(f"grouped / mixing time: {result['grouped'] / result['mixing']:.3f}; "
          f"max |grouped - mixing| feature difference {result['max |grouped - mixing|']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
