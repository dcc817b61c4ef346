"""The frozen part of an adaptive merge: per base method, the origin and the per-task components that test-time
adaptation reweights (lambda) and masks (AdaRank), built once so every step only recombines them.

A :class:`Decomposition` says theta[k] = origin[k] + sum_t lambda[t, k] * U_t diag(h_t * s_t) V_t on *SVD keys*
and theta[k] = origin[k] + sum_t lambda[t, k] * non_svd_scale * dense_t[k] on the others; h_t = initial_keep
and lambda = the static method's scale reproduce the static method (up to float round-off, since a sum of
rank-one terms is not rounded like the static code's product).

Per base (T tasks, r = min(m, n)):

* **plain** (AdaMerging): no SVD key; origin theta_0, dense tau_t.
* **TA** (AdaRank-TA): SVD keys by AdaRank's predicate (``is_cart_matrix``); components = the thin SVD of tau_t;
  the first ``cart_rank(r, rank)`` start kept (rank 1.0: all). Origin theta_0, dense tau_t.
* **CART** (AdaRank-CART): origin theta_avg = theta_0 + mean_t tau_t, task vectors tau_t - mean_s tau_s on every
  key (non-SVD ones sum to 0 up to rounding, so step 0 is theta_avg there, as static CART); components = their thin
  SVD, the first ``cart_rank(r, rank)`` kept. We use the repo's CART rank rule so step 0 is static CART; it differs
  from AdaRank's int(r * ratio) only where that is 0 (we keep 1, and rank 0 keeps none instead of AdaRank's 1/T).
* **TSV-M** (no released AdaRank code; our design): SVD keys by the static predicate (``is_tsv_iso_matrix``, so
  ``positional_embedding`` and ``proj`` are decomposed, unlike AdaRank's). Per key, exactly the static blocks:
  each task's top k = int(r/T) U columns and V rows, concatenated and replaced by their polar factors P_U, P_V, so
  static TSV-M = scale * sum_t P_U[:, block_t] diag(s_t[:k]) P_V[block_t, :]. Task t's components are those k
  orthogonalised ones (kept) followed, with ``tail`` (default), by its r - k truncated raw SVD components
  U_t[:, k:], s_t[k:], V_t[k:] (pruned), which AdaRank may switch on; they cannot be orthogonalised as well, since
  T * r directions do not fit in rank r. Non-SVD keys: the static mean, i.e. dense tau_t with non_svd_scale 1/T.
* **Iso-CTS** (our design): the static blocks again (task-specific top ``per`` directions of each residual, then
  the c common directions of sum_t tau_t, both polar-orthogonalised, every value flattened to their mean f).
  Task t's components are its ``per`` specific ones (value f) followed by a 1/T share of every common one (value
  f / T), so that equal lambdas give f on the common subspace, and lambda_t / mask_t move task t's share of it. All
  start kept: static Iso-CTS already spans all r directions, so there is no truncated tail to offer. Non-SVD keys:
  mean of tau_t, as TSV-M.

Matrices are decomposed in the tall orientation (wide ones transposed, as ``merging.spectral`` does, which matters
for Iso-CTS's left projection) and stored back in the original one. A matrix key whose task vectors are all zero
(CLIP's untouched text tensors) is kept dense: its contribution is exactly zero either way, as in the static
methods, and its SVD would be wasted. Everything is stored in the compute dtype (float32, float64 stays float64).

The TSV-M and Iso-CTS blocks come from the very functions the static methods multiply
(``merging.tsv.tsv_orthogonal_factors``, ``merging.iso.iso_cts_blocks``), so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from mergeflow.declarations.common import check_fraction
from mergeflow.errors import MergeflowError
from mergeflow.merging.cart import cart_rank
from mergeflow.merging.common import TaskVectors, stack_tensors
from mergeflow.merging.iso import iso_cts_blocks
from mergeflow.merging.plan import InMemoryVectors
from mergeflow.merging.predicates import KeyPredicate, is_cart_matrix, is_tsv_iso_matrix
from mergeflow.merging.spectral import thin_svd
from mergeflow.merging.tsv import tsv_orthogonal_factors, tsv_per_task_rank

Tensor = torch.Tensor
# Per-task components of one key, tall orientation: left (T, m, r), values (T, r), right (T, r, n), keep (T, r) bool.
Blocks = tuple[Tensor, Tensor, Tensor, Tensor]
# (stack of T tall task matrices (T, m, n), m >= n; transposed?) -> Blocks
BlockRule = Callable[[Tensor, bool], Blocks]


@dataclass(frozen=True)
class Decomposition:
    """Frozen origin and components of an adaptive merge (see the module docstring for the formula).

    Components of SVD key k are stored concatenated over tasks (task order = ``tasks``), so one matmul merges
    them: ``U[k]`` is (m, T*r), ``s[k]`` is (T, r), ``V[k]`` is (T*r, n); :meth:`factors` gives task t's
    (m, r), (r,), (r, n) views. ``dense[k]`` is (T, *shape) for the other keys; ``initial_keep[k]`` is (T, r)
    bool. ``untouched`` holds base entries without a task vector (integer buffers), copied into merged states.
    """

    method: str
    tasks: list[str]
    keys: list[str]
    svd_keys: list[str]
    origin: dict[str, Tensor]
    U: dict[str, Tensor]
    s: dict[str, Tensor]
    V: dict[str, Tensor]
    dense: dict[str, Tensor]
    initial_keep: dict[str, Tensor]
    non_svd_scale: float
    dtypes: dict[str, torch.dtype]
    untouched: dict[str, Tensor]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def rank(self, key: str) -> int:
        """Components per task of SVD key ``key``."""
        return int(self.s[key].shape[1])

    def factors(self, task: int, key: str) -> tuple[Tensor, Tensor, Tensor]:
        """Task ``task``'s (U (m, r), s (r,), V (r, n)) of SVD key ``key``, as views."""
        rank = self.rank(key)
        columns = slice(task * rank, (task + 1) * rank)
        return self.U[key][:, columns], self.s[key][task], self.V[key][columns]


def _first(num_tasks: int, rank: int, kept: int, device: torch.device) -> Tensor:
    """(T, r) bool: the first ``kept`` components of every task."""
    return (torch.arange(rank, device=device) < kept).expand(num_tasks, rank).clone()


def svd_rule(fraction: float) -> BlockRule:
    """Thin SVD of each task matrix, the first cart_rank(r, fraction) components kept (TA, CART)."""

    def rule(stack: Tensor, transposed: bool) -> Blocks:
        left, values, right = thin_svd(stack)
        kept = cart_rank(values.shape[1], fraction)
        return left, values, right, _first(len(stack), values.shape[1], kept, stack.device)

    return rule


def tsv_blocks(stack: Tensor, per_task: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """TSV-M's blocks per task: (orthogonalised left (T, m, k), right (T, k, n), and the raw left, values, right of
    every task's thin SVD), sliced from the very factors static TSV-M multiplies (``merging.tsv``)."""
    num_tasks, rows, cols = stack.shape
    if per_task == 0:
        left, values, right = thin_svd(stack)
        return left.new_zeros(num_tasks, rows, 0), right.new_zeros(num_tasks, 0, cols), left, values, right
    orthogonal_left, _, orthogonal_right, (left, values, right) = tsv_orthogonal_factors(stack, per_task, every_component=True)
    used = num_tasks * per_task
    blocks_left = orthogonal_left[:, :used].reshape(rows, num_tasks, per_task).permute(1, 0, 2)
    blocks_right = orthogonal_right[:used].reshape(num_tasks, per_task, cols)
    return blocks_left, blocks_right, left, values, right


def tsv_rule(num_tasks: int, rank: float | None, tail: bool) -> BlockRule:
    """TSV-M's orthogonalised top-k components (kept), then, with ``tail``, each task's raw truncated ones (pruned)."""

    def rule(stack: Tensor, transposed: bool) -> Blocks:
        per_task = tsv_per_task_rank(stack.shape[2], num_tasks, rank)
        orthogonal_left, orthogonal_right, left, values, right = tsv_blocks(stack, per_task)
        if tail:
            left = torch.cat([orthogonal_left, left[:, :, per_task:]], dim=2)
            right = torch.cat([orthogonal_right, right[:, per_task:]], dim=1)
        else:
            left, values, right = orthogonal_left, values[:, :per_task], orthogonal_right
        return left, values, right, _first(num_tasks, values.shape[1], per_task, stack.device)

    return rule


def iso_cts_rule(common: float) -> BlockRule:
    """Task t: its Iso-CTS specific directions (value f), then a 1/T share (value f/T) of each common one; all kept."""

    def rule(stack: Tensor, transposed: bool) -> Blocks:
        num_tasks, rows, cols = stack.shape
        orthogonal_left, orthogonal_right, flat_value, per_task, num_common = iso_cts_blocks(stack, transposed, stack.shape[0], common)
        used = num_tasks * per_task
        left = torch.cat([
            orthogonal_left[:, :used].reshape(rows, num_tasks, per_task).permute(1, 0, 2),
            orthogonal_left[:, used:].expand(num_tasks, rows, num_common),
        ], dim=2)
        right = torch.cat([
            orthogonal_right[:used].reshape(num_tasks, per_task, cols),
            orthogonal_right[used:].expand(num_tasks, num_common, cols),
        ], dim=1)
        values = torch.cat([flat_value.expand(num_tasks, per_task), (flat_value / num_tasks).expand(num_tasks, num_common)], dim=1)
        return left, values, right, torch.ones(num_tasks, per_task + num_common, dtype=torch.bool, device=stack.device)

    return rule


def _never(key: str, tensor: Tensor) -> bool:
    return False


def decompose(
    method: str,
    base: Mapping[str, Tensor],
    task_vectors: TaskVectors,
    *,
    is_matrix: KeyPredicate,
    rule: BlockRule,
    centre: bool = False,
    non_svd_scale: float = 1.0,
) -> Decomposition:
    """The generic builder: origin theta_0 (or theta_avg with ``centre``, the task vectors then centred on their
    mean), ``rule`` on every non-zero key ``is_matrix`` selects, the task vectors themselves on the others."""
    vectors = InMemoryVectors(task_vectors)  # validates keys, shapes, dtypes, finiteness
    _check_base(base, task_vectors, vectors.keys)
    origin: dict[str, Tensor] = {}
    U: dict[str, Tensor] = {}
    s: dict[str, Tensor] = {}
    V: dict[str, Tensor] = {}
    dense: dict[str, Tensor] = {}
    keep: dict[str, Tensor] = {}
    svd_keys: list[str] = []
    for key in vectors.keys:
        tensors = vectors.tensors(key)
        stack = stack_tensors(tensors)  # a new (T, *shape) tensor in the compute dtype
        start = base[key].detach().to(stack.dtype, copy=True)
        if centre:
            mean = stack.mean(dim=0)
            start += mean
            stack -= mean
        origin[key] = start
        if not is_matrix(key, tensors[0]):
            dense[key] = stack
            continue
        if stack.ndim != 3:
            raise MergeflowError(f"the matrix predicate selected {key!r}, which has shape {tuple(stack.shape[1:])}, not 2-D")
        if not stack.any():
            dense[key] = stack
            continue
        transposed = stack.shape[1] < stack.shape[2]
        left, values, right, kept = rule(stack.mT if transposed else stack, transposed)
        if transposed:
            left, right = right.mT, left.mT
        num_tasks, rows, rank = left.shape
        U[key] = left.permute(1, 0, 2).reshape(rows, num_tasks * rank).contiguous()
        s[key] = values.contiguous()
        V[key] = right.reshape(num_tasks * rank, -1).contiguous()
        keep[key] = kept
        svd_keys.append(key)
    untouched = {key: value.detach().clone() for key, value in base.items() if key not in origin}
    return Decomposition(
        method=method, tasks=vectors.names, keys=vectors.keys, svd_keys=svd_keys, origin=origin, U=U, s=s, V=V,
        dense=dense, initial_keep=keep, non_svd_scale=non_svd_scale,
        dtypes={key: base[key].dtype for key in vectors.keys}, untouched=untouched,
    )


def _check_base(base: Mapping[str, Tensor], task_vectors: TaskVectors, keys: list[str]) -> None:
    reference = next(iter(task_vectors.values()))
    for key in keys:
        if key not in base:
            raise MergeflowError(f"the base model has no {key!r}, which the task vectors have; pass the matching base")
        if base[key].shape != reference[key].shape:
            raise MergeflowError(
                f"the base model's {key!r} has shape {tuple(base[key].shape)}, the task vectors' {tuple(reference[key].shape)}"
            )


def decompose_plain(base: Mapping[str, Tensor], task_vectors: TaskVectors) -> Decomposition:
    """No SVD (AdaMerging): origin theta_0, every key dense tau_t."""
    return decompose("plain", base, task_vectors, is_matrix=_never, rule=svd_rule(1.0))


def decompose_ta(
    base: Mapping[str, Tensor], task_vectors: TaskVectors, rank: float = 1.0, *, is_matrix: KeyPredicate = is_cart_matrix
) -> Decomposition:
    """AdaRank over Task Arithmetic: thin SVD of tau_t on AdaRank's keys; ``rank`` = initial_rank_ratio (1.0 =
    all kept, the shipped configs except L/14 with 20 tasks)."""
    rank = check_fraction("rank", rank, allow_zero=True)
    return decompose("ta", base, task_vectors, is_matrix=is_matrix, rule=svd_rule(rank))


def decompose_cart(
    base: Mapping[str, Tensor], task_vectors: TaskVectors, rank: float = 0.16, *, is_matrix: KeyPredicate = is_cart_matrix
) -> Decomposition:
    """AdaRank over CART: origin theta_avg, centred task vectors; ``rank`` 0.16 = AdaRank's B/32 8-task
    initial_rank_ratio (static CART's registry default is 0.12)."""
    rank = check_fraction("rank", rank, allow_zero=True)
    return decompose("cart", base, task_vectors, is_matrix=is_matrix, rule=svd_rule(rank), centre=True)


def decompose_tsv_m(
    base: Mapping[str, Tensor],
    task_vectors: TaskVectors,
    rank: float | None = None,
    *,
    tail: bool = True,
    is_matrix: KeyPredicate = is_tsv_iso_matrix,
) -> Decomposition:
    """AdaRank over TSV-M (our design, module docstring); ``rank`` as static ``tsv_m`` (None: int(r/T))."""
    if rank is not None:
        rank = check_fraction("rank", rank, allow_zero=False)
    num_tasks = len(task_vectors)
    return decompose("tsv_m", base, task_vectors, is_matrix=is_matrix, rule=tsv_rule(num_tasks, rank, tail),
                     non_svd_scale=1.0 / max(num_tasks, 1))


def decompose_iso_cts(
    base: Mapping[str, Tensor], task_vectors: TaskVectors, common: float = 0.8, *, is_matrix: KeyPredicate = is_tsv_iso_matrix
) -> Decomposition:
    """AdaRank over Iso-CTS (our design, module docstring); ``common`` as static ``iso_cts`` (default 0.8)."""
    common = check_fraction("common", common, allow_zero=True)
    return decompose("iso_cts", base, task_vectors, is_matrix=is_matrix, rule=iso_cts_rule(common),
                     non_svd_scale=1.0 / max(len(task_vectors), 1))
