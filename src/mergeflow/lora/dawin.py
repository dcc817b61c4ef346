"""DaWin (docs/methods.md §13): coefficients from the prediction entropy of each individual model on the input.

c(x) = softmax_t(-H_t(x)); the merged model is theta_0 + scale * T * sum_t c_t(x) tau_t (scale 0.3, so equal entropies
give Task Arithmetic at 0.3). The authors' multi-task default averages c over a whole dataset and merges once per
dataset (a task-ID assumption); here the per-input form is the default and the dataset mean an option. The
Dirichlet-mixture fit whose "1-component" model is really T components is not reproduced; its intent is the mean.
"""

from __future__ import annotations

import torch

from mergeflow.errors import MergeflowError


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """(B,) Shannon entropy (nats) of softmax(logits) along the last axis."""
    log_p = torch.log_softmax(logits.double(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def dawin_coefficients(entropies: torch.Tensor, scale: float = 0.3) -> torch.Tensor:
    """(B, T) entropies -> scale * T * softmax(-H): the per-input interpolation coefficients."""
    if entropies.dim() != 2 or entropies.shape[1] == 0:
        raise MergeflowError(f"entropies must be (inputs, models), got {tuple(entropies.shape)}")
    if not torch.isfinite(entropies).all():
        raise MergeflowError("an entropy is NaN or infinite: a model produced non-finite logits")
    return scale * entropies.shape[1] * torch.softmax(-entropies.double(), dim=-1)


def dataset_mean(coefficients: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each row replaced by the mean coefficient row of its group (the authors' one-merge-per-dataset mode)."""
    means = torch.zeros(int(groups.max()) + 1, coefficients.shape[1], dtype=coefficients.dtype)
    means.index_add_(0, groups, coefficients)
    counts = torch.bincount(groups, minlength=means.shape[0]).clamp(min=1).to(coefficients.dtype)
    return (means / counts[:, None])[groups]
