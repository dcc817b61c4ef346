"""Toy task vectors shared by the scale-selection tests (tests/merging/test_merge_scaled.py, tests/test_selection.py)."""

from __future__ import annotations

import torch


def task_vectors(dtype: torch.dtype = torch.float32, count: int = 4) -> dict[str, dict[str, torch.Tensor]]:
    """Tall, wide and all-zero matrices, vectors, a 4-D kernel, and one key larger than a TIES/TA chunk."""
    generator = torch.Generator().manual_seed(7)
    shapes = {
        "resblocks.0.attn.in_proj_weight": (12, 5),
        "resblocks.0.mlp.c_proj.weight": (5, 9),
        "resblocks.0.mlp.c_fc.weight": (300, 240),  # 72,000 entries: chunked by element-wise kernels
        "resblocks.0.mlp.c_fc.bias": (9,),
        "ln_1.weight": (5,),
        "conv1.weight": (2, 3, 2, 2),
        "token_embedding.weight": (6, 5),  # all zero, as CLIP's untouched text tensors
    }
    return {
        f"task{index}": {
            key: torch.zeros(shape, dtype=dtype) if key == "token_embedding.weight"
            else torch.randn(shape, generator=generator).to(dtype)
            for key, shape in shapes.items()
        }
        for index in range(count)
    }
