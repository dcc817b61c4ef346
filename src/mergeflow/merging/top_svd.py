"""The leading k components of every task's SVD at one key, exact or randomized (the ``svd`` hyperparameter).

TSV-M (r/T per task) and CART (rank * r per centred task vector) only use each matrix's top k components, so a
randomized range finder (Halko, Martinsson & Tropp 2011, Alg. 5.1: ``torch.svd_lowrank``) can replace the full
decomposition. ``exact`` is the thin SVD sliced, exactly what these methods computed before the option existed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mergeflow.declarations.common import check_choice
from mergeflow.declarations.merging import SVD_CHOICES
from mergeflow.merging.spectral import thin_svd

# ``lowrank``: q = k + LOWRANK_OVERSAMPLE random directions (Halko et al.'s p = 5..10; the slack that makes the error
# bound hold with high probability), LOWRANK_NITER power iterations (torch's default 2 leaves percent-level error on
# the slowly decaying spectra of task vectors; each iteration costs two passes over the matrix), and a fixed seed so
# the same inputs give the same merge.
LOWRANK_OVERSAMPLE = 10
LOWRANK_NITER = 4
LOWRANK_SEED = 0


@contextmanager
def _seeded(device: torch.device) -> Iterator[None]:
    """Seed the generator ``torch.svd_lowrank`` draws from (``device``'s default one) and restore it afterwards, so a
    merge is deterministic and leaves the caller's random stream where it was."""
    accelerator = device.type != "cpu"
    with torch.random.fork_rng(devices=[device] if accelerator else [], device_type=device.type if accelerator else "cuda"):
        if accelerator:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(LOWRANK_SEED)
        else:
            torch.default_generator.manual_seed(LOWRANK_SEED)
        yield


def top_svd(stack: torch.Tensor, kept: int, svd: str = "exact") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U (T, m, k), s (T, k), V^T (T, k, n)): the top ``kept`` components of each matrix of a (T, m, n) stack, in
    one batched call. ``exact`` slices the thin SVD; ``lowrank`` runs ``torch.svd_lowrank`` with
    q = min(k + LOWRANK_OVERSAMPLE, n) and LOWRANK_NITER power iterations (docs/methods.md, "svd: lowrank")."""
    svd = check_choice("svd", svd, SVD_CHOICES)
    if svd == "exact":
        left, values, right = thin_svd(stack)
        return left[:, :, :kept], values[:, :kept], right[:, :kept, :]
    with _seeded(stack.device):
        left, values, right_columns = torch.svd_lowrank(stack, q=min(kept + LOWRANK_OVERSAMPLE, *stack.shape[1:]),
                                                        niter=LOWRANK_NITER)
    return left[:, :, :kept], values[:, :kept], right_columns[:, :, :kept].mT
