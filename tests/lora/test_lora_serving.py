"""The LoRA-expert methods on the real tiny ViT: the mixed encoder equals peft's adapted model for a one-hot row and
materialised weights for any row; K = 1 with oracle routing is the expert; Twin and DaWin meet their identities."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mergeflow.errors import MergeflowError
from mergeflow.lora.adapters import LoraSpec, add_lora, lora_factors, lora_state
from mergeflow.lora.bank import FactorBank, stack_factors
from mergeflow.lora.dawin import dataset_mean, dawin_coefficients, prediction_entropy
from mergeflow.lora.mixed_encoder import MixedEncoder
from mergeflow.lora.policies import (
    ConstantPolicy,
    DawinPolicy,
    ExpertPolicy,
    TrPolicy,
    TwinPolicy,
    dataset_mean_policy,
    head_logits,
    serve,
)
from mergeflow.lora.twin import TwinRouter, load_twin_router, shared_and_exclusive, train_twin_router
from mergeflow.models.backbone import create_clip

SPEC = LoraSpec(rank=4, alpha=8.0, dropout=0.0)


def _base() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_clip("mf-vit-tiny").visual.eval()


def _experts(count: int = 3) -> tuple[torch.nn.Module, list[torch.nn.Module], FactorBank]:
    """``count`` peft-adapted copies of one base encoder with random (non-zero) LoRA weights, and their bank."""
    base = _base()
    adapted, factors = [], []
    for expert in range(count):
        module = add_lora(_base(), SPEC).eval()
        generator = torch.Generator().manual_seed(10 + expert)
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                if ".lora_" in name:
                    parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
        adapted.append(module)
        factors.append(lora_factors(lora_state(module)))
    return base, adapted, stack_factors([f"t{e}" for e in range(count)], factors, [SPEC.scaling] * count)


def _pixels(n: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _materialised(base: torch.nn.Module, bank: FactorBank, row: torch.Tensor) -> dict[str, torch.Tensor]:
    state = base.state_dict()
    return {key: value + bank.deltas(row).get(key, 0.0) for key, value in state.items()}


def test_one_hot_row_is_the_peft_expert_and_any_row_is_its_materialised_merge() -> None:
    base, adapted, bank = _experts()
    encoder = MixedEncoder(base, bank)
    pixels = _pixels()
    with torch.no_grad():
        for expert, module in enumerate(adapted):
            one_hot = F.one_hot(torch.full((5,), expert), 3).float()
            assert torch.allclose(encoder(pixels, one_hot), module(pixels), atol=1e-5)
        rows = torch.rand(5, 3, generator=torch.Generator().manual_seed(3))
        mixed = encoder(pixels, rows)
        for b in range(5):
            single = _base()
            single.load_state_dict(_materialised(base, bank, rows[b]))
            assert torch.allclose(mixed[b], single(pixels[b : b + 1])[0], atol=1e-5)
        assert torch.equal(encoder(pixels, torch.zeros(5, 3)), base(pixels))  # zero row = the base model
    assert all(not p.requires_grad for p in encoder.parameters()) and encoder.nbytes() > bank.nbytes() > 0


def test_bank_rejects_mismatched_experts() -> None:
    a, b = torch.zeros(2, 4), torch.zeros(3, 2)
    with pytest.raises(MergeflowError, match="other layers"):
        stack_factors(["x", "y"], [{"l1": (a, b)}, {"l2": (a, b)}], [1.0, 1.0])
    with pytest.raises(MergeflowError, match="LoRA rank"):
        stack_factors(["x", "y"], [{"l1": (a, b)}, {"l1": (torch.zeros(3, 4), torch.zeros(3, 3))}], [1.0, 1.0])
    with pytest.raises(MergeflowError, match="NaN"):
        stack_factors(["x"], [{"l1": (a.fill_(float("nan")), b)}], [1.0])
    with pytest.raises(MergeflowError, match="not a linear layer"):
        MixedEncoder(_base(), stack_factors(["x"], [{"transformer": (torch.zeros(2, 4), torch.zeros(3, 2))}], [1.0]))


def test_tr_with_k1_and_oracle_like_samples_serves_each_input_with_its_expert() -> None:
    """K = 1 where routing picks the true task equals the individual LoRA expert (docs/methods.md §4(d))."""
    base, adapted, bank = _experts()
    encoder = MixedEncoder(base, bank)
    pixels = _pixels(6)
    with torch.no_grad():
        embeddings = encoder(pixels, torch.zeros(6, 3))
    truth = torch.tensor([0, 1, 2, 0, 1, 2])
    # each task's "samples" are its own inputs' embeddings: mean-cosine routing then recovers the task
    samples = [embeddings[truth == t] for t in range(3)]
    policy = TrPolicy(encoder, samples, temperature=1e-6, k=1, form="scaled")
    heads = [F.normalize(torch.randn(4, embeddings.shape[1], generator=torch.Generator().manual_seed(t)), dim=-1) for t in range(3)]
    classes, coefficients = serve(policy, heads, pixels, truth)
    assert torch.equal(coefficients.argmax(dim=1), truth) and torch.allclose(coefficients.sum(dim=1), torch.ones(6))
    with torch.no_grad():
        expected = torch.stack([head_logits(adapted[int(t)](pixels[i : i + 1]), heads, t.reshape(1))[0] for i, t in enumerate(truth)])
    assert torch.equal(classes, expected)
    expert_classes, _ = serve(ExpertPolicy(encoder), heads, pixels, truth)
    assert torch.equal(expert_classes, expected)


def test_task_arithmetic_policy_is_the_static_merge() -> None:
    base, _, bank = _experts()
    encoder = MixedEncoder(base, bank)
    pixels = _pixels()
    single = _base()
    single.load_state_dict(_materialised(base, bank, torch.full((3,), 0.3)))
    with torch.no_grad():
        coefficients = ConstantPolicy(encoder, 0.3).coefficients(pixels, torch.zeros(5, dtype=torch.int64))
        assert torch.allclose(encoder(pixels, coefficients), single(pixels), atol=1e-5)


def test_twin_one_hot_router_with_full_density_gives_the_expert() -> None:
    """docs/methods.md §12(d): a one-hot router with density 1 gives theta* + (theta_t - theta*) = theta_t."""
    base, adapted, bank = _experts()
    shared, exclusive = shared_and_exclusive(bank, 0.29, 1.0)
    theta_star = {key: value + shared.get(key, 0.0) for key, value in base.state_dict().items()}
    encoder = MixedEncoder(base, exclusive, base_weights=theta_star)
    pixels = _pixels()
    with torch.no_grad():
        for expert, module in enumerate(adapted):
            assert torch.allclose(encoder(pixels, F.one_hot(torch.full((5,), expert), 3).float()), module(pixels), atol=1e-4)
    _, low = shared_and_exclusive(bank, 0.29, 0.1)
    assert all(f.a.shape[1] == max(1, int(0.1 * min(f.b.shape[1], f.a.shape[2]))) for f in low.layers.values())
    with pytest.raises(MergeflowError):
        shared_and_exclusive(bank, 0.29, 0.0)


def test_twin_router_learns_separable_features_and_selects_on_validation() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = 3 * torch.eye(8)[:3]
    train = [centres[t] + 0.3 * torch.randn(40, 8, generator=generator) for t in range(3)]
    val = [centres[t] + 0.3 * torch.randn(20, 8, generator=generator) for t in range(3)]
    trained = train_twin_router(train, val, hidden=16, dropout=0.1, lr=0.01, epochs=15, batch_size=32, seed=0)
    assert len(trained.val_accuracy) == 15 and trained.val_accuracy[trained.epoch] == max(trained.val_accuracy) == 1.0
    router = load_twin_router(trained.state)
    assert isinstance(router, TwinRouter) and not router.training
    with torch.no_grad():
        assert torch.equal(router(torch.cat(val)).argmax(dim=1), torch.arange(3).repeat_interleave(20))
    again = train_twin_router(train, val, hidden=16, dropout=0.1, lr=0.01, epochs=15, batch_size=32, seed=0)
    assert again.val_accuracy == trained.val_accuracy  # seeded
    base, _, bank = _experts()
    shared, exclusive = shared_and_exclusive(bank, 0.29, 0.1)
    policy = TwinPolicy(MixedEncoder(base, exclusive), load_twin_router(train_twin_router(
        [torch.randn(8, 128, generator=generator) for _ in range(3)], [torch.randn(4, 128, generator=generator) for _ in range(3)],
        hidden=8, dropout=0.0, lr=0.01, epochs=1, batch_size=8, seed=0).state))
    rows = policy.coefficients(_pixels(), torch.zeros(5, dtype=torch.int64))
    assert rows.shape == (5, 3) and torch.allclose(rows.sum(dim=1), torch.ones(5))


def test_dawin_toy_values_and_equal_entropies_give_task_arithmetic() -> None:
    """docs/methods.md §13(d) toy: H = [0.2, 1.5, 2.0] -> 0.3 * 3 * c = [0.6259, 0.1706, 0.1035]."""
    coefficients = dawin_coefficients(torch.tensor([[0.2, 1.5, 2.0], [1.0, 1.0, 1.0]]))
    assert torch.allclose(coefficients[0], torch.tensor([0.6259, 0.1706, 0.1035], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(coefficients[1], torch.full((3,), 0.3, dtype=torch.float64))
    assert torch.allclose(prediction_entropy(torch.zeros(1, 4)), torch.log(torch.tensor([4.0], dtype=torch.float64)))
    grouped = dataset_mean(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]), torch.tensor([0, 0, 1]))
    assert torch.allclose(grouped, torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]))
    with pytest.raises(MergeflowError):
        dawin_coefficients(torch.tensor([[float("nan"), 1.0]]))


def test_dawin_policy_runs_one_pass_per_expert_and_its_dataset_mode_is_constant_per_task() -> None:
    base, _, bank = _experts()
    encoder = MixedEncoder(base, bank)
    heads = [F.normalize(torch.randn(c, 128, generator=torch.Generator().manual_seed(c)), dim=-1) * 20 for c in (2, 3, 4)]
    pixels, tasks = _pixels(6), torch.tensor([0, 1, 2, 0, 1, 2])
    for head in ("dataset", "expert"):
        rows = DawinPolicy(encoder, heads, 0.3, head).coefficients(pixels, tasks)  # type: ignore[arg-type]
        assert rows.shape == (6, 3) and torch.allclose(rows.sum(dim=1), torch.full((6,), 0.9), atol=1e-5)
    grouped = dataset_mean_policy(DawinPolicy(encoder, heads), pixels, tasks, batch_size=4)
    rows = grouped.coefficients(pixels, tasks)
    assert torch.equal(rows[0], rows[3]) and torch.equal(rows[1], rows[4])
