"""Training behaviour on a toy functional encoder: frozen components, the learn/clamp options, pruning, the loop."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from adaptation_toy import C_PROJ, IN_PROJ, TASKS, toy_base, toy_task_vectors

from mergeflow.adaptation.components import Decomposition, decompose_iso_cts, decompose_plain, decompose_ta, decompose_tsv_m
from mergeflow.adaptation.loop import adapt, entropy_loss
from mergeflow.adaptation.model import AdaptiveMerge, adamerging, adarank
from mergeflow.errors import MergeflowError

BIAS = "visual.transformer.resblocks.0.mlp.c_fc.bias"
HEADS = [torch.randn((5, 3), generator=torch.Generator().manual_seed(50 + index)) for index in range(len(TASKS))]


def forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """A toy 'image encoder' over a state dict: two AdaRank matrices, a bias and the projection."""
    hidden = torch.tanh(x @ state[IN_PROJ].T)[:, :8] + state[BIAS]
    return (hidden @ state[C_PROJ].T) @ state["visual.proj"]


def batches(step: int, task: int) -> torch.Tensor:
    return torch.randn((6, 4), generator=torch.Generator().manual_seed(1000 * step + task))


def _run(model: AdaptiveMerge, steps: int = 3, **options: object):  # type: ignore[no-untyped-def]
    return adapt(model, forward, HEADS, batches, steps, lr=1e-2, **options)  # type: ignore[arg-type]


def _snapshot(model: AdaptiveMerge) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.named_buffers()}


DECOMPOSERS: dict[str, Callable[..., Decomposition]] = {
    "ta": decompose_ta, "tsv_m": decompose_tsv_m, "iso_cts": lambda base, tvs: decompose_iso_cts(base, tvs, 0.5),
}


@pytest.mark.parametrize("method", list(DECOMPOSERS))
def test_training_changes_masks_and_lambda_never_the_components(method: str) -> None:
    base, task_vectors = toy_base(), toy_task_vectors()
    base_copy = {key: value.clone() for key, value in base.items()}
    model = adarank(DECOMPOSERS[method](base, task_vectors), prior=0.3)
    buffers, coefficients = _snapshot(model), model.coefficients.detach().clone()
    logits = model.mask_logits[model.svd_keys.index(IN_PROJ)].detach().clone()
    _run(model)
    assert all(torch.equal(tensor, buffers[name]) for name, tensor in model.named_buffers())
    assert any(name.startswith("U_") for name in buffers) and any(name.startswith("origin_") for name in buffers)
    assert not torch.equal(model.mask_logits[model.svd_keys.index(IN_PROJ)].detach(), logits)
    assert not torch.equal(model.coefficients.detach(), coefficients)
    assert all(torch.equal(base[key], base_copy[key]) for key in base)
    assert set(model.state_dict()) == {"coefficients"} | {f"mask_logits.{index}" for index in range(len(model.svd_keys))}


def test_learn_lambda_false_keeps_the_prior() -> None:
    model = AdaptiveMerge(decompose_ta(toy_base(), toy_task_vectors()), learn_lambda=False, prior=0.3)
    logits = [parameter.detach().clone() for parameter in model.mask_logits]
    _run(model)
    assert torch.equal(model.coefficients.detach(), torch.full_like(model.coefficients, 0.3))
    assert any(not torch.equal(parameter.detach(), before) for parameter, before in zip(model.mask_logits, logits, strict=True))
    assert all(parameter is not model.coefficients for parameter in model.parameters_to_learn())


def test_learn_masks_false_keeps_the_logits() -> None:
    model = AdaptiveMerge(decompose_ta(toy_base(), toy_task_vectors()), learn_masks=False, prior=0.3)
    logits = [parameter.detach().clone() for parameter in model.mask_logits]
    _run(model)
    assert all(torch.equal(parameter.detach(), before) for parameter, before in zip(model.mask_logits, logits, strict=True))
    assert not torch.equal(model.coefficients.detach(), torch.full_like(model.coefficients, 0.3))
    assert model.parameters_to_learn() == [model.coefficients]


@pytest.mark.parametrize("granularity", ["layer", "task"])
def test_adamerging_clamp_gives_zero_gradient_outside_unit_interval(granularity: str) -> None:
    model = adamerging(toy_base(), toy_task_vectors(), granularity=granularity)  # type: ignore[arg-type]
    with torch.no_grad():
        model.coefficients[0] = 1.5
        model.coefficients[1] = -0.2
    entropy_loss(model.merged_state(), forward, HEADS, [batches(0, task) for task in range(3)]).backward()
    gradient = model.coefficients.grad
    assert gradient is not None
    assert torch.equal(gradient[:2], torch.zeros_like(gradient[:2])) and gradient[2].abs().sum() > 0
    assert torch.equal(model.effective_coefficients()[:2, 0], torch.tensor([1.0, 0.0]))
    outside = model.coefficients.detach()[:2].clone()
    _run(model)
    assert torch.equal(model.coefficients.detach()[:2], outside)  # zero gradient, no weight decay: Adam leaves them


@pytest.mark.parametrize("logit", [-0.1, 0.0])
def test_negative_or_zero_logit_prunes_that_component(logit: float) -> None:
    decomposition = decompose_ta(toy_base(), toy_task_vectors())
    model = adarank(decomposition, prior=0.3)
    before, ranks = model.hard_state(), model.kept_ranks()
    with torch.no_grad():
        model.mask_logits[model.svd_keys.index(IN_PROJ)][0, 0] = logit
    after, new_ranks = model.hard_state(), model.kept_ranks()
    assert new_ranks["a"][IN_PROJ] == ranks["a"][IN_PROJ] - 1
    assert {task: r for task, r in new_ranks.items() if task != "a"} == {task: r for task, r in ranks.items() if task != "a"}
    assert not model.mask_matrix(IN_PROJ)[0, 0] and model.mask_matrix(IN_PROJ).sum() == 3 * 4 - 1
    left, values, right = decomposition.factors(0, IN_PROJ)
    expected = before[IN_PROJ] - 0.3 * values[0] * torch.outer(left[:, 0], right[0])
    assert torch.allclose(after[IN_PROJ], expected, atol=1e-6)
    assert all(torch.equal(after[key], before[key]) for key in before if key != IN_PROJ)


def test_adapt_reports_every_step_and_the_final_hard_state() -> None:
    base = toy_base()
    model = adarank(decompose_tsv_m(base, toy_task_vectors()), prior=1.0)
    calls: list[tuple[int, float]] = []
    result = _run(model, 4, on_step=lambda step, loss: calls.append((step, loss)))
    assert [step for step, _ in calls] == [0, 1, 2, 3] and [loss for _, loss in calls] == result.losses
    assert len(result.seconds) == 4 and all(seconds > 0 for seconds in result.seconds)
    assert set(result.state) == set(base) and all(result.state[key].dtype == base[key].dtype for key in base)
    assert torch.equal(result.state["num_batches_tracked"], base["num_batches_tracked"])
    hard = model.hard_state()
    assert all(torch.equal(result.state[key], hard[key]) for key in hard)
    merged = model.merged_state()
    assert all(torch.equal(merged[key].detach(), hard[key]) for key in model.keys)
    assert result.kept_ranks == model.kept_ranks() and result.coefficients.shape == (3, len(model.keys))


def test_adapt_is_deterministic_and_zero_steps_is_step0() -> None:
    first = _run(adamerging(toy_base(), toy_task_vectors()))
    second = _run(adamerging(toy_base(), toy_task_vectors()))
    assert first.losses == second.losses and all(torch.equal(first.state[key], second.state[key]) for key in first.state)
    model = adarank(decompose_ta(toy_base(), toy_task_vectors()), prior=0.3)
    untrained = _run(model, 0)
    assert untrained.losses == [] and all(torch.equal(untrained.state[key], value) for key, value in model.hard_state().items())


def test_adapt_refuses_bad_setups() -> None:
    model = adarank(decompose_ta(toy_base(), toy_task_vectors()), prior=0.3)
    with pytest.raises(MergeflowError, match="heads for 3 tasks"):
        adapt(model, forward, HEADS[:2], batches, 1)
    with pytest.raises(MergeflowError, match="nothing to learn"):
        adapt(AdaptiveMerge(decompose_plain(toy_base(), toy_task_vectors()), learn_lambda=False), forward, HEADS, batches, 1)
    with pytest.raises(MergeflowError, match="lr"):
        adapt(model, forward, HEADS, batches, 1, lr=0.0)
    with pytest.raises(MergeflowError, match="no masks"):
        model.mask_matrix(BIAS)
