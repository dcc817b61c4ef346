"""``svd: lowrank`` (merging.top_svd) against the exact thin SVD: bounded error on low-rank-plus-noise matrices, a
check that can fail, determinism, and TSV-M / CART / CART's scale parts agreeing with their exact results."""

from __future__ import annotations

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.merging import top_svd as top_svd_module
from mergeflow.merging.cart import cart, cart_parts
from mergeflow.merging.registry import check_meaningful, parse_assignments, resolve_hyperparameters
from mergeflow.merging.top_svd import top_svd
from mergeflow.merging.tsv import tsv_m

F64 = torch.float64
BOUND = 1e-6  # relative Frobenius error of the rank-k reconstruction; exact-vs-lowrank on a clear spectral gap


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _low_rank_plus_noise(tasks: int, rows: int, cols: int, rank: int, noise: float, seed: int) -> torch.Tensor:
    """(T, m, n): rank-``rank`` signal (singular values 1 .. 0.5) plus Gaussian noise of std ``noise``."""
    generator = _generator(seed)
    left = torch.linalg.qr(torch.randn(tasks, rows, rank, generator=generator, dtype=F64)).Q
    right = torch.linalg.qr(torch.randn(tasks, cols, rank, generator=generator, dtype=F64)).Q.mT
    values = torch.linspace(1.0, 0.5, rank, dtype=F64)
    return (left * values) @ right + noise * torch.randn(tasks, rows, cols, generator=generator, dtype=F64)


def _relative_error(stack: torch.Tensor, kept: int) -> float:
    def reconstruction(method: str) -> torch.Tensor:
        left, values, right = top_svd(stack, kept, method)
        assert left.shape == (*stack.shape[:2], kept) and values.shape == (stack.shape[0], kept)
        assert right.shape == (stack.shape[0], kept, stack.shape[2])
        return (left * values[:, None, :]) @ right

    exact = reconstruction("exact")
    return float(torch.linalg.matrix_norm(reconstruction("lowrank") - exact).max() / torch.linalg.matrix_norm(exact).min())


@pytest.mark.parametrize(("rows", "cols"), [(120, 60), (60, 120), (300, 40)])
def test_lowrank_reconstructs_the_kept_rank_of_low_rank_plus_noise(rows: int, cols: int) -> None:
    stack = _low_rank_plus_noise(4, rows, cols, rank=6, noise=1e-3, seed=rows + cols)
    assert _relative_error(stack, 6) < BOUND


def test_the_error_check_fails_without_oversampling_or_power_iterations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check discriminates: on a small spectral gap (noise singular values ~0.2 against a signal's 0.5), the
    shipped q and niter stay close to exact, and q = k without power iterations does not."""
    stack = _low_rank_plus_noise(4, 120, 60, rank=6, noise=1e-2, seed=3)
    assert _relative_error(stack, 6) < 1e-3
    monkeypatch.setattr(top_svd_module, "LOWRANK_OVERSAMPLE", 0)
    monkeypatch.setattr(top_svd_module, "LOWRANK_NITER", 0)
    assert _relative_error(stack, 6) > 1e-2


def test_lowrank_is_deterministic_and_leaves_the_random_stream_alone() -> None:
    stack = _low_rank_plus_noise(3, 50, 30, rank=4, noise=1e-2, seed=5)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = top_svd(stack, 4, "lowrank")
    assert torch.equal(torch.rand(3), expected_next)
    second = top_svd(stack, 4, "lowrank")
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_lowrank_caps_q_at_the_matrix_rank() -> None:
    stack = _low_rank_plus_noise(2, 20, 8, rank=3, noise=1e-2, seed=9)
    left, values, right = top_svd(stack, 8, "lowrank")  # k + oversampling > n: q = n, every component
    assert torch.allclose((left * values[:, None, :]) @ right, stack, atol=1e-10)


def _task_vectors(noise: float, rank: int = 12) -> dict[str, dict[str, torch.Tensor]]:
    """4 tasks: a tall and a wide matrix of rank ``rank`` plus noise each, and a bias (a non-matrix key)."""
    stack = _low_rank_plus_noise(4, 96, 48, rank=rank, noise=noise, seed=11)
    wide = _low_rank_plus_noise(4, 48, 96, rank=rank, noise=noise, seed=12)
    bias = torch.randn(4, 48, generator=_generator(13), dtype=F64)
    return {f"t{task}": {"block.attn.in_proj_weight": stack[task], "block.mlp.c_proj.weight": wide[task],
                         "block.mlp.c_fc.bias": bias[task]} for task in range(4)}


# (merge, signal rank per task): each case's q = k + 10 spans the signal the kept components come from (TSV-M: k = 12
# or 2 of a rank-12 signal; CART: k = 4 of centred vectors spanning the tasks' 4 x 3 directions), so lowrank is close.
@pytest.mark.parametrize(("merge", "rank"), [(lambda tvs, svd: tsv_m(tvs, svd=svd), 12),
                                             (lambda tvs, svd: tsv_m(tvs, rank=0.05, svd=svd), 12),
                                             (lambda tvs, svd: cart(tvs, rank=0.1, svd=svd), 3),
                                             (lambda tvs, svd: cart_parts(tvs, rank=0.1, svd=svd).direction, 3)])
def test_methods_with_lowrank_match_their_exact_results(merge, rank: int) -> None:  # type: ignore[no-untyped-def]
    tvs = _task_vectors(noise=1e-4, rank=rank)
    exact, lowrank = merge(tvs, "exact"), merge(tvs, "lowrank")
    assert set(exact) == set(lowrank)
    for key in exact:
        assert float(torch.linalg.norm(lowrank[key] - exact[key])) <= BOUND * float(torch.linalg.norm(exact[key])), key


def test_svd_is_declared_for_the_low_rank_methods_only() -> None:
    assert resolve_hyperparameters("tsv_m")["svd"] == "exact"
    assert resolve_hyperparameters("cart")["svd"] == "exact"
    assert "svd" not in resolve_hyperparameters("iso_cts")
    assert parse_assignments("cart", ["svd=lowrank"]) == {"svd": "lowrank"}
    with pytest.raises(MergeflowError, match=r"^svd must be one of exact, lowrank; got 'fast'$"):
        parse_assignments("tsv_m", ["svd=fast"])
    with pytest.raises(MergeflowError, match="rank 0 keeps no component, so svd lowrank decomposes nothing"):
        check_meaningful("cart", 8, {"rank": 0.0, "svd": "lowrank"})
    with pytest.raises(MergeflowError, match="svd must be one of"):
        tsv_m(_task_vectors(1e-3), svd="fast")


@pytest.mark.parametrize(("rows", "cols", "kept"), [(48, 20, 5), (30, 30, 7), (64, 16, 1)])
def test_exact_top_components_equal_the_thin_svd(rows: int, cols: int, kept: int) -> None:
    """``exact`` with k < r (the float64 Gram path) gives the thin SVD's top k values and rank-k reconstruction
    to float32 rounding, on a decaying spectrum without a gap at k."""
    generator = _generator(3)
    stack = torch.randn(4, rows, cols, generator=generator) * torch.logspace(0, -2, cols)
    left, values, right = top_svd(stack, kept, "exact")
    assert left.dtype == values.dtype == right.dtype == torch.float32
    ref_left, ref_values, ref_right = torch.linalg.svd(stack.to(F64), full_matrices=False)
    assert torch.allclose(values.to(F64), ref_values[:, :kept], rtol=1e-6, atol=0)
    ours = (left.to(F64) * values.to(F64)[:, None, :]) @ right.to(F64)
    reference = (ref_left[:, :, :kept] * ref_values[:, None, :kept]) @ ref_right[:, :kept]
    assert float((ours - reference).abs().max()) <= 1e-6 * float(reference.abs().max())
    orthogonality = left.to(F64).mT @ left.to(F64) - torch.eye(kept, dtype=F64)
    assert float(orthogonality.abs().max()) < 1e-5


def test_exact_top_components_of_a_rank_deficient_matrix_come_from_the_thin_svd(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept spectrum reaching zero (rank 2, k = 3) would divide by ~0 on the Gram path: the thin SVD decides."""
    generator = _generator(4)
    stack = torch.randn(2, 40, 2, generator=generator) @ torch.randn(2, 2, 12, generator=generator)
    calls: list[int] = []
    thin_svd = top_svd_module.thin_svd
    monkeypatch.setattr(top_svd_module, "thin_svd", lambda matrix: calls.append(1) or thin_svd(matrix))
    left, values, right = top_svd(stack, 3, "exact")
    assert calls == [1] and bool(torch.isfinite(left).all())
    reference = torch.linalg.svd(stack, full_matrices=False)
    assert torch.equal(values, reference.S[:, :3])
