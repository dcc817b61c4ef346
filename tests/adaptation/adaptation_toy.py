"""A tiny open_clip-like toy for the adaptation tests: AdaRank keys (tall and wide), TSV-only matrices, a 4-D
patch embedding, a bias, a LayerNorm, an all-zero text matrix, a scalar and an integer buffer; three tasks.

A plain module with a unique name (not a conftest), so ``from adaptation_toy import ...`` cannot pick up another
directory's helpers when the whole suite runs.
"""

from __future__ import annotations

import torch

TASKS = ("a", "b", "c")
IN_PROJ = "visual.transformer.resblocks.0.attn.in_proj_weight"
C_PROJ = "visual.transformer.resblocks.0.mlp.c_proj.weight"  # wide: 4 x 8
ZERO_TEXT = "transformer.resblocks.0.attn.out_proj.weight"  # untouched by fine-tuning, as CLIP's text tower


def _random(shape: tuple[int, ...], seed: int, scale: float) -> torch.Tensor:
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _model(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {
        IN_PROJ: _random((12, 4), seed, scale),
        "visual.transformer.resblocks.0.attn.out_proj.weight": _random((4, 4), seed + 1, scale),
        "visual.transformer.resblocks.0.mlp.c_fc.weight": _random((8, 4), seed + 2, scale),
        C_PROJ: _random((4, 8), seed + 3, scale),
        "visual.transformer.resblocks.0.mlp.c_fc.bias": _random((8,), seed + 4, scale),
        "visual.transformer.resblocks.0.ln_1.weight": _random((4,), seed + 5, scale),
        "visual.positional_embedding": _random((5, 4), seed + 6, scale),
        "visual.proj": _random((4, 3), seed + 7, scale),
        "visual.conv1.weight": _random((4, 3, 2, 2), seed + 8, scale),
        ZERO_TEXT: torch.zeros(4, 4),
        "logit_scale": _random((), seed + 9, scale),
        "num_batches_tracked": torch.tensor(3),
    }


def toy_base() -> dict[str, torch.Tensor]:
    return _model(0)


def toy_task_vectors() -> dict[str, dict[str, torch.Tensor]]:
    vectors = {}
    for index, task in enumerate(TASKS):
        vector = {key: value for key, value in _model(100 * (index + 1), 0.1).items() if value.is_floating_point()}
        vector[ZERO_TEXT] = torch.zeros(4, 4)
        vectors[task] = vector
    return vectors
