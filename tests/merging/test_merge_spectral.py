"""T = 1 identities (TALL, EMR, TSV-M, CART) and the spectrum properties of TSV-M, Iso-C and Iso-CTS (docs/methods.md §5-9)."""

from __future__ import annotations

import pytest
import torch

from mergeflow.merging.bank import reconstruct
from mergeflow.merging.cart import cart
from mergeflow.merging.common import add_to_base
from mergeflow.merging.emr import emr_merge
from mergeflow.merging.iso import iso_c, iso_cts, iso_cts_subspace_sizes
from mergeflow.merging.predicates import excluding, is_cart_matrix, is_tsv_iso_matrix, matrix_predicate
from mergeflow.merging.spectral import polar_factor
from mergeflow.merging.tall import tall_ta
from mergeflow.merging.tsv import tsv_m

F64 = torch.float64


def _random(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _singular_values(matrix: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(matrix)


def _model(seed: int) -> dict[str, torch.Tensor]:
    """A tiny open_clip-like state dict: tall and wide matrices, a bias, a LayerNorm, an integer buffer."""
    return {
        "resblocks.0.attn.in_proj_weight": _random((9, 4), seed),
        "resblocks.0.mlp.c_proj.weight": _random((4, 7), seed + 1),
        "resblocks.0.mlp.c_fc.bias": _random((7,), seed + 2),
        "ln_1.weight": _random((4,), seed + 3),
        "positional_embedding": _random((5, 4), seed + 4),
        "text_projection": _random((4, 4), seed + 5),
        "num_batches_tracked": torch.tensor(3),
    }


def _single_task() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    base, expert = _model(0), _model(100)
    tau = {key: expert[key] - base[key] for key in base if base[key].is_floating_point()}
    tau["resblocks.0.mlp.c_fc.bias"][2] = 0.0  # a zero entry: TALL and EMR masks must leave it out harmlessly
    expert["resblocks.0.mlp.c_fc.bias"][2] = base["resblocks.0.mlp.c_fc.bias"][2]
    return base, expert, {"only": tau}


def _assert_state_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol: float = 1e-10) -> None:
    assert set(actual) == set(expected)
    for key in expected:
        assert torch.allclose(actual[key].to(F64), expected[key].to(F64), atol=atol), key


def test_tall_single_task_is_the_expert() -> None:
    base, expert, tvs = _single_task()
    bank = tall_ta(tvs, lam=0.5)
    assert torch.equal(bank.masks["only"]["resblocks.0.mlp.c_fc.bias"], tvs["only"]["resblocks.0.mlp.c_fc.bias"] != 0)
    _assert_state_close(reconstruct(base, bank, "only"), expert)


def test_emr_single_task_is_the_expert() -> None:
    base, expert, tvs = _single_task()
    bank = emr_merge(tvs)
    assert bank.rescalers["only"] == pytest.approx(1.0, abs=1e-12)
    _assert_state_close(reconstruct(base, bank, "only"), expert)


def test_tsv_m_single_task_is_the_expert() -> None:
    base, expert, tvs = _single_task()
    _assert_state_close(add_to_base(base, tsv_m(tvs, scale=1.0)), expert, atol=1e-9)


@pytest.mark.parametrize("rank", [0.12, 0.5, 1.0])
def test_cart_single_task_is_the_expert(rank: float) -> None:
    base, expert, tvs = _single_task()
    _assert_state_close(add_to_base(base, cart(tvs, scale=2.0, rank=rank)), expert, atol=1e-9)


def _tasks(count: int, shape: tuple[int, int], seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    return {f"t{index}": {"w": _random(shape, seed + index), "b": _random((shape[1],), seed + 50 + index)} for index in range(count)}


@pytest.mark.parametrize("shape", [(12, 9), (9, 12), (12, 10)], ids=["tall", "wide", "unused-slot"])
def test_tsv_m_singular_values_are_the_kept_task_singular_values(shape: tuple[int, int]) -> None:
    tvs = _tasks(3, shape)
    per_task = min(shape) // 3
    kept = torch.cat([_singular_values(tv["w"])[:per_task] for tv in tvs.values()])
    expected = torch.cat([kept.sort(descending=True).values, torch.zeros(min(shape) - kept.numel(), dtype=F64)])
    delta = tsv_m(tvs, scale=1.0)
    assert torch.allclose(_singular_values(delta["w"]), expected, atol=1e-9)
    assert torch.allclose(tsv_m(tvs, scale=0.5)["w"], 0.5 * delta["w"], atol=1e-12)
    assert torch.allclose(delta["b"], torch.stack([tv["b"] for tv in tvs.values()]).mean(dim=0))


def test_tsv_m_of_mutually_orthogonal_low_rank_tasks_is_their_sum() -> None:
    tvs = {}
    for index in range(3):  # task t lives on rows and columns [3t, 3t+3): rank 3 = k = int(9/3)
        # (exactly k: with rank < k the extra singular vectors of a zero singular value are arbitrary and
        # may overlap other tasks' spaces, which the orthogonalisation would then mix in)
        matrix = torch.zeros(10, 9, dtype=F64)
        matrix[3 * index : 3 * index + 3, 3 * index : 3 * index + 3] = _random((3, 3), index)
        tvs[f"t{index}"] = {"w": matrix}
    total = sum(tv["w"] for tv in tvs.values())
    assert torch.allclose(tsv_m(tvs)["w"], total, atol=1e-9)
    assert not torch.allclose(iso_c(tvs)["w"], total, atol=1e-3)  # the property is TSV-M's, not every method's


def test_polar_factor_is_orthonormal_and_keeps_directions() -> None:
    matrix = _random((7, 4), 3)
    factor = polar_factor(matrix)
    assert torch.allclose(factor.mT @ factor, torch.eye(4, dtype=F64), atol=1e-12)
    # The polar factor is the orthonormal matrix closest to `matrix`: <factor, matrix> = nuclear norm.
    assert torch.isclose((factor * matrix).sum(), _singular_values(matrix).sum())


@pytest.mark.parametrize("shape", [(8, 5), (5, 8)], ids=["tall", "wide"])
def test_iso_c_spectrum_is_flat_at_the_mean_of_the_sum(shape: tuple[int, int]) -> None:
    tvs = _tasks(3, shape)
    total = sum(tv["w"] for tv in tvs.values())
    spectrum = _singular_values(total)
    delta = iso_c(tvs, scale=1.0)["w"]
    assert torch.allclose(_singular_values(delta), spectrum.mean().expand(min(shape)), atol=1e-9)
    assert torch.isclose((delta * total).sum(), spectrum.mean() * spectrum.sum())  # same singular directions
    assert torch.allclose(iso_c(tvs, scale=1.5)["w"], 1.5 * delta, atol=1e-12)


def test_iso_c_mean_counts_near_zero_singular_values() -> None:
    # Two rank-1 tasks: the sum has rank 2 of r = 5, so the flat value is (s1 + s2) / 5, not (s1 + s2) / 2.
    tvs = {f"t{i}": {"w": _random((6, 1), i) @ _random((1, 5), 10 + i)} for i in range(2)}
    spectrum = _singular_values(tvs["t0"]["w"] + tvs["t1"]["w"])
    flat = spectrum[:2].sum() / 5
    assert torch.allclose(_singular_values(iso_c(tvs)["w"]), flat.expand(5), atol=1e-9)


def test_iso_c_single_task_is_not_the_expert() -> None:
    tvs = _tasks(1, (6, 4))
    assert not torch.allclose(iso_c(tvs)["w"], tvs["t0"]["w"], atol=1e-3)


@pytest.mark.parametrize("shape", [(8, 5), (5, 8)], ids=["tall", "wide"])
def test_iso_cts_with_all_common_space_is_iso_c(shape: tuple[int, int]) -> None:
    tvs = _tasks(3, shape)
    iso_cts_delta, iso_c_delta = iso_cts(tvs, common=1.0, scale=1.2), iso_c(tvs, scale=1.2)
    for key in ("w", "b"):
        assert torch.allclose(iso_cts_delta[key], iso_c_delta[key], atol=1e-9)


@pytest.mark.parametrize(
    ("rank", "tasks", "common", "expected"),
    [(768, 8, 0.8, (616, 19)), (50, 20, 0.8, (50, 0)), (768, 14, 0.8, (614, 11)), (10, 4, 1.0, (10, 0)), (3, 4, 0.0, (3, 0))],
)
def test_iso_cts_subspace_sizes(rank: int, tasks: int, common: float, expected: tuple[int, int]) -> None:
    assert iso_cts_subspace_sizes(rank, tasks, common) == expected


def _iso_cts_literal(tasks: list[torch.Tensor], common: float) -> torch.Tensor:
    """docs/methods.md §8(a) step by step in the matrix's own orientation (no transposition), as a reference."""
    total = sum(tasks)
    left, values, right = torch.linalg.svd(total, full_matrices=False)
    num_common, per_task = iso_cts_subspace_sizes(min(total.shape), len(tasks), common)
    basis = left[:, :num_common]
    lefts, kept, rights = [], [], []
    for task in tasks:
        u, s, vh = torch.linalg.svd(task - basis @ basis.T @ task, full_matrices=False)
        lefts.append(u[:, :per_task]), kept.append(s[:per_task]), rights.append(vh[:per_task])
    combined_left = torch.cat([*lefts, basis], dim=1)
    combined_right = torch.cat([*rights, right[:num_common]], dim=0)
    flat = torch.cat([*kept, values[:num_common]]).mean()
    u1, _, v1 = torch.linalg.svd(combined_left, full_matrices=False)
    u2, _, v2 = torch.linalg.svd(combined_right, full_matrices=False)
    return flat * (u1 @ v1) @ (u2 @ v2)


@pytest.mark.parametrize("shape", [(8, 5), (5, 8)], ids=["tall", "wide"])
def test_iso_cts_matches_the_literal_rule_in_both_orientations(shape: tuple[int, int]) -> None:
    tvs = _tasks(2, shape, seed=7)  # r = 5, f = 0.5: c = 1 common, 2 per task
    expected = _iso_cts_literal([tv["w"] for tv in tvs.values()], 0.5)
    delta = iso_cts(tvs, common=0.5)["w"]
    assert torch.allclose(delta, expected, atol=1e-9)
    assert not torch.allclose(delta, iso_c(tvs)["w"], atol=1e-3)


def test_cart_full_rank_or_zero_rank_is_the_average() -> None:
    tvs = _tasks(3, (6, 4))
    tvs = {name: {"mlp.c_fc.weight": tv["w"], "mlp.c_fc.bias": tv["b"]} for name, tv in tvs.items()}
    mean = {key: torch.stack([tv[key] for tv in tvs.values()]).mean(dim=0) for key in ("mlp.c_fc.weight", "mlp.c_fc.bias")}
    for rank in (1.0, 0.0):
        _assert_state_close(cart(tvs, scale=2.0, rank=rank), mean, atol=1e-9)
    assert not torch.allclose(cart(tvs, scale=2.0, rank=0.25)["mlp.c_fc.weight"], mean["mlp.c_fc.weight"], atol=1e-3)


def test_cart_adds_the_scaled_sum_of_rank_k_centred_task_vectors() -> None:
    common = _random((3, 3), 1)
    offsets = [torch.diag(torch.tensor(d, dtype=F64)) for d in ([3.0, -1.0, 0.0], [-1.0, 2.0, 0.0], [-2.0, -1.0, 0.0])]
    tvs = {f"t{i}": {"attn.out_proj.weight": common + offset, "visual.proj": common + offset} for i, offset in enumerate(offsets)}
    delta = cart(tvs, scale=2.0, rank=0.34)  # k = max(1, int(0.34 * 3)) = 1: keep each offset's largest entry
    expected = common + 2.0 * torch.diag(torch.tensor([3.0 - 2.0, 2.0, 0.0], dtype=F64))
    assert torch.allclose(delta["attn.out_proj.weight"], expected, atol=1e-9)
    assert torch.allclose(delta["visual.proj"], common, atol=1e-12)  # not an attn/mlp key: the average


def test_matrix_predicates_follow_each_codebase() -> None:
    matrix, vector = torch.zeros(2, 2), torch.zeros(2)
    assert is_tsv_iso_matrix("positional_embedding", matrix) and is_tsv_iso_matrix("visual.proj", matrix)
    assert not is_tsv_iso_matrix("text_projection", matrix) and not is_tsv_iso_matrix("attn.in_proj_bias", vector)
    assert is_cart_matrix("resblocks.0.attn.in_proj_weight", matrix) and is_cart_matrix("resblocks.0.mlp.c_fc.weight", matrix)
    assert not is_cart_matrix("visual.proj", matrix) and not is_cart_matrix("resblocks.0.ln_1.weight", matrix)
    assert not is_cart_matrix("resblocks.0.attn.in_proj_bias", matrix)
    assert matrix_predicate("cart") is is_cart_matrix and matrix_predicate("iso_cts") is is_tsv_iso_matrix
    assert not excluding(is_tsv_iso_matrix, "classifier")("classifier.weight", matrix)


def test_custom_predicate_changes_which_keys_are_decomposed() -> None:
    tvs = _tasks(2, (6, 4))
    mean = (tvs["t0"]["w"] + tvs["t1"]["w"]) / 2
    assert torch.allclose(iso_c(tvs, is_matrix=lambda key, tensor: False)["w"], mean)
    assert not torch.allclose(iso_c(tvs)["w"], mean, atol=1e-3)
