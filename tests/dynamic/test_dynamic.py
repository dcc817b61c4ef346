"""WEMoE and MoW-Merging (src/mergeflow/dynamic): the per-input mixing math, each method's exact limiting cases on
a small open_clip tower, their declarations, and the params block they are configured by."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from mergeflow.dynamic.layers import last_sublayer_keys, mlp_linears
from mergeflow.dynamic.methods import DYNAMIC_REGISTRY, get_dynamic_method
from mergeflow.dynamic.mixing import mixed_dense_linear
from mergeflow.dynamic.mow import MixtureOfWeights
from mergeflow.dynamic.training import minimise_entropy
from mergeflow.dynamic.wemoe import WeightEnsemblingEncoder
from mergeflow.errors import MergeflowError
from mergeflow.lora.twin import TwinRouter
from mergeflow.models.backbone import create_clip

TASKS = 3


@pytest.fixture(scope="module")
def tower() -> tuple[torch.nn.Module, dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    torch.manual_seed(0)
    encoder = create_clip("mf-vit-tiny").visual.eval()
    base = {key: value.detach().clone() for key, value in encoder.state_dict().items()}
    vectors = {f"t{i}": {k: 0.05 * torch.randn_like(v) for k, v in base.items() if v.is_floating_point()} for i in range(TASKS)}
    return encoder, base, vectors


def _task_arithmetic(base: dict[str, torch.Tensor], vectors: dict[str, dict[str, torch.Tensor]], scale: float) -> dict[str, torch.Tensor]:
    return {k: v + scale * sum(t[k] for t in vectors.values()) if k in vectors["t0"] else v for k, v in base.items()}


def test_mixed_dense_linear_equals_each_inputs_own_weights() -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 5, 6, generator=generator)
    weight, bias = torch.randn(7, 6, generator=generator), torch.randn(7, generator=generator)
    deltas, delta_bias = torch.randn(3, 7, 6, generator=generator), torch.randn(3, 7, generator=generator)
    c = torch.rand(4, 3, generator=generator)
    out = mixed_dense_linear(x, weight, bias, deltas, delta_bias, c)
    for b in range(4):
        w = weight + (c[b, :, None, None] * deltas).sum(0)
        expected = x[b] @ w.T + bias + c[b] @ delta_bias
        torch.testing.assert_close(out[b], expected)
    with pytest.raises(MergeflowError, match="coefficients must be"):
        mixed_dense_linear(x, weight, bias, deltas, delta_bias, c[:, :2])


def test_mixed_dense_linear_without_bias_on_one_token_per_input_and_its_coefficient_gradient() -> None:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(4, 6, generator=generator)
    weight, deltas = torch.randn(7, 6, generator=generator), torch.randn(3, 7, 6, generator=generator)
    c = torch.rand(4, 3, generator=generator, requires_grad=True)
    out = mixed_dense_linear(x, weight, None, deltas, None, c)
    expected = torch.stack([x[b] @ (weight + (c[b, :, None, None] * deltas).sum(0)).T for b in range(4)])
    torch.testing.assert_close(out, expected)
    (grad,) = torch.autograd.grad(out.square().sum(), c)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), c)
    torch.testing.assert_close(grad, expected_grad)


def test_wemoe_with_silent_routers_is_task_arithmetic_and_learns_only_its_routers(tower) -> None:
    encoder, base, vectors = tower
    model = WeightEnsemblingEncoder(encoder, base, vectors, init_lambda=0.3, router_layers=2, generator=torch.Generator().manual_seed(0))
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        for gate in model.gates:
            for layer in gate.layers:
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.zero_()
        torch.testing.assert_close(model(x), functional_call(encoder, _task_arithmetic(base, vectors, 0.3), (x,)), atol=1e-5, rtol=1e-5)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items() if "gate" not in k}
    heads = [torch.nn.functional.normalize(torch.randn(4, model(x[:1]).shape[1]), dim=-1) for _ in range(TASKS)]
    pools = [torch.randn(8, 3, 32, 32) for _ in range(TASKS)]
    log = minimise_entropy(model, list(model.gates.parameters()), heads, lambda step, task: pools[task][:4], 5, 1e-2, "test")
    assert len(log.losses) == 5 and log.losses[-1] < log.losses[0]
    after = {k: v for k, v in model.encoder.state_dict().items() if "gate" not in k}
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)
    copy = WeightEnsemblingEncoder(encoder, base, vectors, init_lambda=0.3, router_layers=2, generator=torch.Generator().manual_seed(5))
    copy.load_learned(model.learned())
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x))


def test_wemoe_routes_each_input_by_its_own_tokens(tower) -> None:
    encoder, base, vectors = tower
    model = WeightEnsemblingEncoder(encoder, base, vectors, init_lambda=0.3, router_layers=1, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(MergeflowError, match="router_layers"):
        WeightEnsemblingEncoder(encoder, base, vectors, init_lambda=0.3, router_layers=3, generator=torch.Generator())


def test_mow_with_a_certain_gate_serves_each_input_its_experts_last_sublayers(tower) -> None:
    encoder, base, vectors = tower
    rule = _task_arithmetic(base, vectors, 0.3)
    gate = TwinRouter(encoder(torch.zeros(1, 3, 32, 32)).shape[1], TASKS, 8, 0.0).eval()
    model = MixtureOfWeights(encoder, base, vectors, rule, gate, sublayers=2)
    assert all(".resblocks.3." in f".{key}" for key in model.dynamic) and model.dynamic
    x = torch.randn(3, 3, 32, 32)
    p = torch.nn.functional.one_hot(torch.tensor([2, 0, 1]), TASKS).float()
    with torch.no_grad():
        out = model.features(x, p)
        for b, task in enumerate([2, 0, 1]):
            weights = {k: base[k] + vectors[f"t{task}"][k] if k in model.dynamic else rule[k] for k in base}
            torch.testing.assert_close(out[b], functional_call(encoder, weights, (x[b : b + 1],))[0], atol=1e-5, rtol=1e-5)
        probabilities = model.task_probabilities(x)
    torch.testing.assert_close(probabilities.sum(dim=-1), torch.ones(3))


def test_sublayers_are_counted_from_the_end_and_checked(tower) -> None:
    encoder, base, _ = tower
    keys = list(base)
    last = last_sublayer_keys(keys, 1)
    assert last and all(k.startswith("transformer.resblocks.3.") and (".mlp." in k or ".ln_2." in k) for k in last)
    assert set(last) < set(last_sublayer_keys(keys, 2))
    with pytest.raises(MergeflowError, match="sublayers must be in 1..8"):
        last_sublayer_keys(keys, 9)
    assert mlp_linears(encoder)[0] == ("transformer.resblocks.0.mlp.c_fc", "transformer.resblocks.0.mlp.c_proj")
    with pytest.raises(MergeflowError, match="no transformer MLP"):
        mlp_linears(torch.nn.Linear(2, 2))


def test_bert_style_mlps_are_found() -> None:
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16, vocab_size=30))
    assert mlp_linears(model) == [("encoder.layer.0.intermediate.dense", "encoder.layer.0.output.dense"),
                                  ("encoder.layer.1.intermediate.dense", "encoder.layer.1.output.dense")]
    keys = [key for key, _ in model.named_parameters()]
    assert all(k.startswith("encoder.layer.1.") and ".attention." not in k for k in last_sublayer_keys(keys, 1))


def test_declarations_resolve_defaults_and_refuse_bad_values() -> None:
    wemoe = get_dynamic_method("wemoe")
    assert wemoe.resolve()["steps"] == 1000 and wemoe.resolve({"steps": 3})["steps"] == 3
    with pytest.raises(MergeflowError, match="has no hyperparameter 'stpes'"):
        wemoe.resolve({"stpes": 3})
    with pytest.raises(MergeflowError, match="lr must be > 0"):
        wemoe.resolve({"lr": 0.0})
    # a gate dropout of 1 drops every input: refused, as the LoRA routers' is
    assert get_dynamic_method("mow_merging").resolve({"dropout": 0.0})["dropout"] == 0.0
    with pytest.raises(MergeflowError, match=r"dropout must be in \[0, 1\)"):
        get_dynamic_method("mow_merging").resolve({"dropout": 1.0})
    with pytest.raises(MergeflowError, match="known: wemoe, mow_merging"):
        get_dynamic_method("moe")
    assert {(m.method, m.router) for m in DYNAMIC_REGISTRY.values()} == {("wemoe", "wemoe"), ("mow_merging", "mow")}


def test_params_blocks_are_checked_by_the_declarations(root) -> None:
    import yaml

    from mergeflow.params import parse_params

    raw = yaml.safe_load((root / "params.yaml").read_text())
    assert parse_params(raw).dynamic.block("wemoe") == raw["dynamic"]["wemoe"]
    raw["dynamic"]["wemoe"] = {"router_layers": 7}
    with pytest.raises(MergeflowError, match=r"dynamic\.wemoe: router_layers must be 0, 1 or 2"):
        parse_params(raw)
    raw["dynamic"]["wemoe"] = {}
    raw["dynamic"]["methods"] = ["wemoe", "moe"]
    with pytest.raises(MergeflowError, match=r"dynamic\.methods"):
        parse_params(raw)
