"""The adaptive merged model: learnable coefficients (AdaMerging) and straight-through rank masks (AdaRank) on top
of a frozen :class:`~mergeflow.adaptation.components.Decomposition`.

theta[k] = origin[k] + sum_t lam[t, k] * U_t diag(s~_t) V_t   (SVD keys; s~ = STE-masked singular values)
theta[k] = origin[k] + sum_t lam[t, k] * c * dense_t[k]        (other keys; c = the base's non_svd_scale)

with lam clamped to [0, 1] in the forward pass when ``clamp`` (AdaMerging; it then gets zero gradient outside),
unclamped otherwise (AdaRank). Mask logits start at +0.1 for initially kept components and -0.1 otherwise, so
the step-0 model is the base method with scale ``prior``. The frozen tensors are non-persistent buffers: they
move with ``.to(device)``, are never written, and ``state_dict()`` holds only what was learned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from mergeflow.adaptation.components import Decomposition, decompose_plain
from mergeflow.adaptation.ste import MASK_TEMPERATURE, masked_values
from mergeflow.declarations.adaptation import GRANULARITIES
from mergeflow.declarations.common import check_choice, check_number
from mergeflow.errors import MergeflowError
from mergeflow.merging.common import TaskVectors

Tensor = torch.Tensor
Granularity = Literal["layer", "task"]
MASK_INIT = 0.1  # |initial logit|: AdaRank's; flipping a mask then takes ~100 consistent Adam steps at lr 1e-3


class AdaptiveMerge(nn.Module):
    """A merged model whose coefficients and/or component masks are learned; see the module docstring.

    ``granularity`` "layer" learns lam per (task, key) (layer-wise AdaMerging, AdaRank), "task" one lam per task.
    """

    def __init__(
        self,
        decomposition: Decomposition,
        *,
        learn_lambda: bool = True,
        learn_masks: bool = True,
        prior: float = 0.3,
        granularity: Granularity = "layer",
        clamp: bool = False,
        temperature: float = MASK_TEMPERATURE,
    ) -> None:
        super().__init__()
        prior = check_number("prior", prior)
        self.granularity = check_choice("granularity", granularity, GRANULARITIES)
        self.temperature = check_number("temperature", temperature)
        if self.temperature <= 0:
            raise MergeflowError(f"temperature must be > 0, got {temperature!r}")
        self.clamp = bool(clamp)
        if not decomposition.keys:
            raise MergeflowError("the task vectors have no floating-point entries: there is nothing to merge")
        self.tasks = list(decomposition.tasks)
        self.keys = list(decomposition.keys)
        self.svd_keys = list(decomposition.svd_keys)
        self.non_svd_scale = float(decomposition.non_svd_scale)
        self.dtypes = dict(decomposition.dtypes)
        self.untouched_keys = list(decomposition.untouched)
        self._slot = {key: index for index, key in enumerate(self.keys)}
        self._mask_slot = {key: index for index, key in enumerate(self.svd_keys)}
        for index, key in enumerate(self.keys):
            self.register_buffer(f"origin_{index}", decomposition.origin[key], persistent=False)
            if key in self._mask_slot:
                self.register_buffer(f"U_{index}", decomposition.U[key], persistent=False)
                self.register_buffer(f"s_{index}", decomposition.s[key], persistent=False)
                self.register_buffer(f"V_{index}", decomposition.V[key], persistent=False)
            else:
                self.register_buffer(f"dense_{index}", decomposition.dense[key], persistent=False)
        for index, key in enumerate(self.untouched_keys):
            self.register_buffer(f"untouched_{index}", decomposition.untouched[key], persistent=False)
        dtype = decomposition.origin[self.keys[0]].dtype
        columns = len(self.keys) if self.granularity == "layer" else 1
        self.coefficients = nn.Parameter(torch.full((len(self.tasks), columns), prior, dtype=dtype), requires_grad=learn_lambda)
        self.mask_logits = nn.ParameterList(
            nn.Parameter(torch.where(decomposition.initial_keep[key], MASK_INIT, -MASK_INIT).to(dtype), requires_grad=learn_masks)
            for key in self.svd_keys
        )

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def _buffer(self, kind: str, key: str) -> Tensor:
        return getattr(self, f"{kind}_{self._slot[key]}")

    def effective_coefficients(self) -> Tensor:
        """lam as used in the forward pass: clamped to [0, 1] when ``clamp`` (T, K) or (T, 1)."""
        return self.coefficients.clamp(0.0, 1.0) if self.clamp else self.coefficients

    def merged_state(self) -> dict[str, Tensor]:
        """The merged state dict, differentiable in lam and the mask logits (compute dtype; untouched base
        entries are the buffers themselves, so treat the result as read-only)."""
        coefficients = self.effective_coefficients()
        state: dict[str, Tensor] = {}
        for index, key in enumerate(self.keys):
            column = coefficients[:, index if self.granularity == "layer" else 0]
            if key in self._mask_slot:
                values = masked_values(self._buffer("s", key), self.mask_logits[self._mask_slot[key]], self.temperature)
                weights = (column[:, None] * values).reshape(-1)  # task-major, matching U's columns and V's rows
                delta = (self._buffer("U", key) * weights) @ self._buffer("V", key)
            else:
                delta = torch.tensordot(column * self.non_svd_scale, self._buffer("dense", key), dims=1)
            state[key] = self._buffer("origin", key) + delta
        for index, key in enumerate(self.untouched_keys):
            state[key] = getattr(self, f"untouched_{index}")
        return state

    @torch.no_grad()
    def hard_state(self) -> dict[str, Tensor]:
        """The model to evaluate: merged_state's forward value (hard masks), detached, new tensors in the base dtypes."""
        state = self.merged_state()
        return {key: value.detach().to(self.dtypes[key]) if key in self._slot else value.clone() for key, value in state.items()}

    def mask_matrix(self, key: str) -> Tensor:
        """(T, r) bool: which components of SVD key ``key`` each task keeps now (logit > 0)."""
        if key not in self._mask_slot:
            raise MergeflowError(f"{key!r} has no masks; masked keys: {', '.join(self.svd_keys[:5]) or 'none'}")
        return (self.mask_logits[self._mask_slot[key]] > 0).detach()

    def singular_values(self, key: str) -> Tensor:
        """(T, r) the frozen component values of SVD key ``key`` (for the learned-vs-intrinsic-rank analysis)."""
        if key not in self._mask_slot:
            raise MergeflowError(f"{key!r} has no components; keys with components: {', '.join(self.svd_keys[:5]) or 'none'}")
        return self._buffer("s", key).detach()

    def kept_ranks(self) -> dict[str, dict[str, int]]:
        """{task: {SVD key: components kept now}}."""
        kept = {key: self.mask_matrix(key).sum(dim=1).tolist() for key in self.svd_keys}
        return {task: {key: int(kept[key][index]) for key in self.svd_keys} for index, task in enumerate(self.tasks)}

    def parameters_to_learn(self) -> list[nn.Parameter]:
        """What the optimiser updates: lam and/or the mask logits, as configured."""
        return [parameter for parameter in self.parameters() if parameter.requires_grad]


def adamerging(
    base: Mapping[str, Tensor], task_vectors: TaskVectors, *, granularity: Granularity = "layer", prior: float = 0.3
) -> AdaptiveMerge:
    """AdaMerging: clamped coefficients (initially ``prior``) over plain task vectors, no masks."""
    return AdaptiveMerge(decompose_plain(base, task_vectors), learn_lambda=True, learn_masks=False, prior=prior,
                         granularity=granularity, clamp=True)


def adarank(decomposition: Decomposition, *, prior: float, learn_lambda: bool = True) -> AdaptiveMerge:
    """AdaRank: STE masks and (by default) layer-wise unclamped coefficients, initially ``prior``."""
    return AdaptiveMerge(decomposition, learn_lambda=learn_lambda, learn_masks=True, prior=prior, granularity="layer", clamp=False)
