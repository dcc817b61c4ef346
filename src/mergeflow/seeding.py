"""Seeds for every source of randomness, derived from one integer and a name, so runs repeat exactly."""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def derive_seed(base_seed: int, *names: str | int) -> int:
    """A stable 63-bit seed from a base seed and names (e.g. suite seed + task + split), independent of hash salting."""
    text = "/".join([str(base_seed), *map(str, names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and make torch pick deterministic kernels."""
    import torch  # lazy: data generation and params checks need no torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def numpy_rng(base_seed: int, *names: str | int) -> np.random.Generator:
    """A NumPy generator for one named random stream."""
    return np.random.default_rng(derive_seed(base_seed, *names))


def torch_generator(base_seed: int, *names: str | int) -> torch.Generator:
    """A torch CPU generator for one named random stream (sampling order, initialisation)."""
    import torch

    return torch.Generator().manual_seed(derive_seed(base_seed, *names))
