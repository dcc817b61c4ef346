"""Seconds per WEMoE training step (forward + backward + Adam) with the library's dense mixing vs the plain formulation.

Not a test. The encoder is the default backbone's architecture (``mf-vit-minilm``, randomly initialised: the cost does
not depend on the weights) with 8 random task vectors, 2-layer routers, one batch of 16 inputs per task concatenated
as in ``dynamic.training``. "plain" is the same mixing written as einsum, add, bmm, add (the formulation before the
fused one): the two must agree to float rounding, which the script checks before timing. Run on a quiet machine:

    python benchmarks/wemoe_bench.py                 # 20 timed steps per variant, torch's default threads
    OMP_NUM_THREADS=1 python benchmarks/wemoe_bench.py --steps 10
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

import mergeflow.dynamic.mixing as mixing
from mergeflow.adaptation.loop import entropy_loss
from mergeflow.dynamic.wemoe import WeightEnsemblingEncoder
from mergeflow.models.backbone import create_clip

TASKS, PER_TASK = 8, 16


def plain_mixing(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, delta_weight: torch.Tensor,
                 delta_bias: torch.Tensor | None, coefficients: torch.Tensor) -> torch.Tensor:
    """The unfused peer: every intermediate (B, out, in) tensor materialised by its own op."""
    coefficients = coefficients.to(x.dtype)
    per_input = weight + torch.einsum("bt,toi->boi", coefficients, delta_weight)
    y = torch.bmm(x.reshape(x.shape[0], -1, x.shape[-1]), per_input.transpose(1, 2))
    if bias is not None:
        shift = bias + coefficients @ delta_bias if delta_bias is not None else bias.expand(x.shape[0], -1)
        y = y + shift[:, None, :]
    return y.reshape(*x.shape[:-1], weight.shape[0])


def _model() -> tuple[WeightEnsemblingEncoder, list[torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(0)
    encoder = create_clip("mf-vit-minilm", None).visual.eval()
    base = {key: value.detach().clone() for key, value in encoder.state_dict().items()}
    vectors = {f"t{t}": {k: 0.01 * torch.randn_like(v) for k, v in base.items() if v.is_floating_point()} for t in range(TASKS)}
    model = WeightEnsemblingEncoder(encoder, base, vectors, init_lambda=0.3, router_layers=2,
                                    generator=torch.Generator().manual_seed(0))
    heads = [torch.nn.functional.normalize(torch.randn(10, 384), dim=-1) for _ in range(TASKS)]
    return model, heads, [torch.randn(PER_TASK, 3, 32, 32) for _ in range(TASKS)]


def _step_seconds(mix: Callable[..., torch.Tensor], steps: int) -> tuple[float, float]:
    """(median seconds per step, first loss) of ``steps`` timed steps after 3 warm-up steps."""
    original = mixing.mixed_dense_linear
    mixing.mixed_dense_linear = mix
    try:
        model, heads, inputs = _model()
        optimizer = torch.optim.Adam(list(model.gates.parameters()), lr=1e-3)
        seconds, first = [], None
        for step in range(steps + 3):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = entropy_loss({}, lambda _, x: model(x), heads, inputs)
            loss.backward()
            optimizer.step()
            first = loss.item() if first is None else first
            if step >= 3:
                seconds.append(time.perf_counter() - start)
        return sorted(seconds)[len(seconds) // 2], float(first)
    finally:
        mixing.mixed_dense_linear = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (default 20)")
    args = parser.parse_args()
    fused, fused_loss = _step_seconds(mixing.mixed_dense_linear, args.steps)
    plain, plain_loss = _step_seconds(plain_mixing, args.steps)
    if abs(fused_loss - plain_loss) > 1e-4 * abs(plain_loss):
        raise SystemExit(f"the two formulations disagree: first loss {fused_loss} vs {plain_loss}")
    print(f"WEMoE step, {TASKS} tasks x {PER_TASK} inputs, {torch.get_num_threads()} threads")
    print(f"{'mixing':<8} {'ms/step':>8} {'vs plain':>9}")
    print(f"{'fused':<8} {fused * 1e3:8.1f} {fused / plain:8.2f}x")
    print(f"{'plain':<8} {plain * 1e3:8.1f} {1.0:8.2f}x")


if __name__ == "__main__":
    main()
