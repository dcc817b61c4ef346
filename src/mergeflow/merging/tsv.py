"""TSV-M: keep each task's top singular directions, orthogonalise them jointly, and sum (Task Singular Vectors)."""

from __future__ import annotations

import warnings

import torch

from mergeflow.declarations.common import check_choice, check_fraction, check_number
from mergeflow.declarations.merging import SVD_CHOICES
from mergeflow.errors import MergeflowError
from mergeflow.merging.common import StateDict, TaskVectors
from mergeflow.merging.plan import KeyVectors, MergePlan, as_delta, in_memory
from mergeflow.merging.predicates import KeyPredicate, is_tsv_iso_matrix
from mergeflow.merging.spectral import polar_factor, spectral_plan
from mergeflow.merging.top_svd import top_svd
from mergeflow.runtime.device import CPU


def tsv_per_task_rank(rank: int, num_tasks: int, fraction: float | None = None) -> int:
    """Components kept per task: int(r / T) as the authors do (None), or int(fraction * r) if it still fits T times."""
    if fraction is None:
        return rank // num_tasks
    per_task = int(check_fraction("rank", fraction, allow_zero=False) * rank)
    if per_task * num_tasks > rank:
        raise MergeflowError(
            f"rank {fraction} keeps {per_task} components per task, {per_task * num_tasks} for {num_tasks} tasks, "
            f"more than the {rank} a matrix of rank {rank} has; use rank <= 1/T"
        )
    return per_task


def tsv_m(
    task_vectors: TaskVectors, *, scale: float = 1.0, rank: float | None = None, svd: str = "exact",
    is_matrix: KeyPredicate = is_tsv_iso_matrix, device: torch.device = CPU,
) -> StateDict:
    """scale * Delta, the TSV-M merged task vector (``compute_and_sum_svd_mem_reduction``, method TSVM).

    Per matrix key (r = min(m, n), k = int(r/T) or int(rank*r)): concatenate every task's top-k U columns,
    singular values and V^T rows in task order (slots from T*k to r stay zero), replace the U and V
    concatenations by their polar factors, and Delta = P_U diag(s) P_V. Other keys get the mean of tau_t, also
    times ``scale``; so does a matrix whose k rounds to 0 (r < T: the authors' code leaves it at theta_0 silently,
    we merge it as a non-matrix key rather than refuse the whole merge — docs/methods.md, TSV-M). Default scale 1.0 is the paper's; the released code searches {0.1, ..., 3.0} on validation.
    ``svd`` decomposes each task exactly (thin SVD) or with ``torch.svd_lowrank`` (``merging.top_svd``); the SVDs
    run on ``device``; the merged delta is on the task vectors' device.
    """
    return as_delta(in_memory(tsv_m_plan, task_vectors, scale=scale, rank=rank, svd=svd, is_matrix=is_matrix, device=device))


def tsv_m_plan(
    vectors: KeyVectors, *, scale: float = 1.0, rank: float | None = None, svd: str = "exact",
    is_matrix: KeyPredicate = is_tsv_iso_matrix, device: torch.device = CPU,
) -> MergePlan:
    """TSV-M key by key (no global pass); see :func:`tsv_m`."""
    scale = check_number("scale", scale)
    svd = check_choice("svd", svd, SVD_CHOICES)
    num_tasks = len(vectors.names)

    def merge_matrix(stack: torch.Tensor, transposed: bool) -> torch.Tensor:
        per_task = tsv_per_task_rank(stack.shape[2], num_tasks, rank)
        if per_task == 0:  # r < T (e.g. a 2-row token-type embedding, 7 experts): no component per task fits
            warnings.warn(f"tsv_m: a {tuple(stack.shape[1:])} matrix has rank {stack.shape[2]} < what {num_tasks} experts need "
                          "(k rounds to 0); it is merged as the mean of the task vectors, as TSV-M merges non-matrix keys",
                          stacklevel=2)
            return scale * stack.mean(dim=0)  # so the matrix is merged as TSV-M merges its non-matrix keys (docstring)
        orthogonal_left, values_all, orthogonal_right, _ = tsv_orthogonal_factors(stack, per_task, svd)
        return scale * ((orthogonal_left * values_all) @ orthogonal_right)  # scale last: see merging.scaled

    return spectral_plan(is_matrix, merge_matrix, scale, device)


def tsv_orthogonal_factors(
    stack: torch.Tensor, per_task: int, svd: str = "exact", *, every_component: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """TSV-M's blocks at one (T, m, n) key (n <= m): (P_U (m, n), values (n,), P_V (n, n), every task's SVD: the
    whole thin SVD with ``svd="exact"``, only its top ``per_task`` components with ``"lowrank"``).

    Each task's top ``per_task`` left/right singular vectors are concatenated (task by task) and replaced by their
    polar factors; columns past T * per_task are zero-padding (values 0). Static TSV-M is P_U diag(values) P_V;
    AdaRank-TSV-M (``adaptation.components``) slices the same factors per task, so both share this one code path.
    """
    num_tasks, rows, cols = stack.shape
    # AdaRank-TSV-M's tail uses every component; static TSV-M only the top per_task
    left, values, right = top_svd(stack, cols if every_component else per_task, svd)
    used = num_tasks * per_task
    left_all = torch.zeros(rows, cols, dtype=stack.dtype, device=stack.device)
    values_all = torch.zeros(cols, dtype=stack.dtype, device=stack.device)
    right_all = torch.zeros(cols, cols, dtype=stack.dtype, device=stack.device)
    left_all[:, :used] = left[:, :, :per_task].permute(1, 0, 2).reshape(rows, used)
    values_all[:used] = values[:, :per_task].reshape(used)
    right_all[:used] = right[:, :per_task, :].reshape(used, cols)
    return polar_factor(left_all), values_all, polar_factor(right_all.mT).mT, (left, values, right)
