"""TR-Merging's training-free router (docs/methods.md §4): mean cosine similarity to each task's sample embeddings, turned
into per-input expert weights with a temperature, keeping the top K experts.

The paper writes the weights as softmax(softmax(s) / tau) (Eqs. 6-8) but states the intent as softmax(s / tau)
(Eq. 13); both are offered (``form="written"`` is the default, as the text is written) and the report says which ran.
Whether the top-K weights are renormalised is not stated either: ``renormalize`` is a flag (default off, as Eq. 9).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mergeflow.errors import MergeflowError

FORMS = ("written", "scaled")


def mean_cosine_scores(queries: torch.Tensor, task_samples: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, T): s_t(x) = mean_j cos(R(x), z_t^j), embeddings L2-normalised first (float64)."""
    if queries.dim() != 2 or not task_samples:
        raise MergeflowError("need (B, D) query embeddings and one (M_t, D) sample tensor per task")
    for index, samples in enumerate(task_samples):
        if samples.dim() != 2 or samples.shape[1] != queries.shape[1] or samples.shape[0] == 0:
            raise MergeflowError(f"task {index}'s samples must be a non-empty (M, {queries.shape[1]}) tensor, got {tuple(samples.shape)}")
    x = F.normalize(queries.to(torch.float64), dim=-1)
    # mean_j cos(x, z_j) = x . mean_j z_j / |z_j| : one matrix product with each task's mean normalised sample
    centroids = torch.stack([F.normalize(samples.to(torch.float64), dim=-1).mean(dim=0) for samples in task_samples])
    return x @ centroids.T


def routing_weights(scores: torch.Tensor, temperature: float, form: str = "written") -> torch.Tensor:
    """(B, T) weights: "written" softmax(softmax(s) / tau), "scaled" softmax(s / tau)."""
    if form not in FORMS:
        raise MergeflowError(f"form must be one of {', '.join(FORMS)}; got {form!r}")
    if not temperature > 0:
        raise MergeflowError(f"temperature must be > 0, got {temperature!r}")
    inner = scores.softmax(dim=-1) if form == "written" else scores
    return (inner / temperature).softmax(dim=-1)


def top_k(weights: torch.Tensor, k: int, *, renormalize: bool = False) -> torch.Tensor:
    """Keep each row's k largest weights (ties: lowest index first), zero the rest; optionally rescale to sum 1."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= weights.shape[-1]:
        raise MergeflowError(f"k must be an integer in [1, {weights.shape[-1]}], got {k!r}")
    order = torch.sort(weights, dim=-1, descending=True, stable=True).indices[..., :k]
    kept = torch.zeros_like(weights).scatter(-1, order, weights.gather(-1, order))
    return kept / kept.sum(dim=-1, keepdim=True) if renormalize else kept
