"""Twin-Merging (docs/methods.md §12): a shared expert by Task Arithmetic, rank-truncated exclusive vectors, and an MLP
router trained on the shared expert's features; each input is served by theta* + sum_t softmax(router)_t v_t.

Unlike the authors' script, the router's epoch is selected on the validation split (theirs: on test), and nothing is
taken from the true task's model: the served weights are theta* plus the mixture only (biases included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mergeflow.errors import MergeflowError
from mergeflow.lora.bank import FactorBank, LayerFactors
from mergeflow.lora.mixed_encoder import MixedEncoder
from mergeflow.runtime.device import CPU
from mergeflow.seeding import seed_everything, torch_generator


def shared_and_exclusive(bank: FactorBank, shared_scale: float, density: float) -> tuple[dict[str, torch.Tensor], FactorBank]:
    """(theta* - theta_0 per ``layer.weight``, exclusive vectors as factors).

    theta* = theta_0 + shared_scale * sum_t delta_t; v_t = the top int(density * min(out, in)) singular components of
    delta_t - shared_scale * sum_j delta_j (kept as U_k S_k and V_k^T, scaling 1), per 2-D layer. Every layer the
    experts change is a 2-D weight here (LoRA adapts weights only), so the authors' "1-D tensors untouched" rule has
    nothing to act on.
    """
    if not 0 < density <= 1:
        raise MergeflowError(f"twin density must be in (0, 1], got {density}")
    shared: dict[str, torch.Tensor] = {}
    exclusive: dict[str, LayerFactors] = {}
    for name, factors in bank.layers.items():
        deltas = torch.einsum("eor,eri->eoi", factors.b * factors.scaling.reshape(-1, 1, 1), factors.a).double()
        total = shared_scale * deltas.sum(dim=0)
        shared[f"{name}.weight"] = total.float()
        keep = max(1, int(density * min(deltas.shape[1:])))
        u, s, vh = torch.linalg.svd(deltas - total, full_matrices=False)
        exclusive[name] = LayerFactors(vh[:, :keep, :].float().contiguous(), (u[:, :, :keep] * s[:, None, :keep]).float().contiguous(),
                                       torch.ones(bank.size))
    return shared, FactorBank(bank.names, exclusive)


def twin_encoder(encoder: nn.Module, bank: FactorBank, shared_scale: float, density: float, *, device: torch.device = CPU,
                 autocast: str = "none") -> MixedEncoder:
    """The encoder Twin-Merging serves: theta* as its base weights, the exclusive vectors as its mixable experts (its
    SVDs on the CPU; the encoder runs on ``device`` under ``autocast``)."""
    shared, exclusive = shared_and_exclusive(bank, shared_scale, density)
    base = {key: value + shared.get(key, 0.0) for key, value in encoder.state_dict().items()}
    return MixedEncoder(encoder, exclusive, base_weights=base, device=device, autocast=autocast)


class TwinRouter(nn.Module):
    """The authors' router: Linear(D, 2D) -> BN -> LeakyReLU -> Dropout -> Linear(2D, 2D) -> BN -> LeakyReLU ->
    Dropout -> Linear(2D, T) (2D = 1536 for their 768-wide RoBERTa features)."""

    def __init__(self, width: int, tasks: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, tasks),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


@dataclass(frozen=True)
class TwinTraining:
    """What router training chose: the epoch with the best validation accuracy (first on ties) and every epoch's."""

    state: dict[str, torch.Tensor]
    epoch: int
    val_accuracy: list[float]


def train_twin_router(train: list[torch.Tensor], val: list[torch.Tensor], *, hidden: int, dropout: float, lr: float,
                      epochs: int, batch_size: int, seed: int) -> TwinTraining:
    """Cross-entropy over task labels (AdamW), one pass per epoch in seeded order; keeps the best-on-validation epoch."""
    if len(train) != len(val) or len(train) < 2:
        raise MergeflowError("Twin's router needs features of at least two tasks, for both train and validation")
    seed_everything(seed)
    x = torch.cat(train).float()
    y = torch.cat([torch.full((len(rows),), index, dtype=torch.int64) for index, rows in enumerate(train)])
    x_val = torch.cat(val).float()
    y_val = torch.cat([torch.full((len(rows),), index, dtype=torch.int64) for index, rows in enumerate(val)])
    router = TwinRouter(x.shape[1], len(train), hidden, dropout)
    optimizer = torch.optim.AdamW(router.parameters(), lr=lr)
    generator = torch_generator(seed, "twin", "batches")
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    history: list[float] = []
    for epoch in tqdm(range(epochs), desc="twin router", mininterval=2.0):
        router.train()
        order = torch.randperm(len(x), generator=generator)
        for first in range(0, len(x), batch_size):
            rows = order[first : first + batch_size]
            if len(rows) < 2:
                continue  # BatchNorm needs two rows
            loss = F.cross_entropy(router(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        router.eval()
        with torch.no_grad():
            accuracy = float((router(x_val).argmax(dim=-1) == y_val).double().mean())
        history.append(accuracy)
        if best is None or accuracy > best[0]:
            best = (accuracy, epoch, {k: v.detach().clone() for k, v in router.state_dict().items()})
    assert best is not None
    return TwinTraining(best[2], best[1], history)


def load_twin_router(state: dict[str, torch.Tensor], dropout: float = 0.5) -> TwinRouter:
    """A trained router from its state dict (shapes give width, hidden size and tasks)."""
    try:
        width = state["layers.0.weight"].shape[1]
        hidden = state["layers.0.weight"].shape[0]
        tasks = state["layers.8.weight"].shape[0]
    except KeyError as exc:
        raise MergeflowError(f"not a Twin router state (missing {exc}); rerun serve_lora@twin") from exc
    router = TwinRouter(width, tasks, hidden, dropout)
    router.load_state_dict(state, strict=True)
    return router.eval()
