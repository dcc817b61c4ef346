"""peft LoRA experts of a tiny random Qwen2 (TR-Merging's recipe: r 8, alpha 32, dropout 0.1 on gate/up/down_proj),
saved by peft and read back from the files: the factors are peft's own, one expert at coefficient 1 is peft's
merge_and_unload, and Task Arithmetic is base + 0.3 * sum of (alpha/r) B A on the MLP weights and nothing else."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

from mergeflow.errors import MergeflowError
from mergeflow.language.peft_experts import read_lora_expert, task_arithmetic_lora

TASKS = ("rte", "mnli", "qnli")
MLP = ("gate_proj", "up_proj", "down_proj")


def _base(intermediate: int = 48) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=intermediate, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)).eval()


def _train_adapter(base: Qwen2ForCausalLM, folder: Path, seed: int, **options: object) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """An adapter with random (as if trained) factors, saved by peft; returns {module path: (A, B)} from the live model."""
    config = LoraConfig(r=int(options.pop("r", 8)), lora_alpha=32, lora_dropout=0.1, target_modules=list(MLP), task_type="CAUSAL_LM",
                        **options)  # type: ignore[arg-type]
    model = get_peft_model(copy.deepcopy(base), config)
    generator = torch.Generator().manual_seed(seed)
    factors: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_" in name:
                parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
                layer = name.removeprefix("base_model.model.").split(".lora_")[0]
                factors.setdefault(layer, []).append(parameter.detach().clone())  # lora_A comes before lora_B
    model.save_pretrained(folder)
    return {layer: (pair[0], pair[1]) for layer, pair in factors.items()}


@pytest.fixture(scope="module")
def experts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Qwen2ForCausalLM, dict[str, Path], dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]]:
    root = tmp_path_factory.mktemp("lora")
    base = _base()
    factors = {task: _train_adapter(base, root / task, seed) for seed, task in enumerate(TASKS)}
    return base, {task: root / task for task in TASKS}, factors


def test_the_adapter_files_read_back_as_peft_trained_them(experts) -> None:  # type: ignore[no-untyped-def]
    _, folders, factors = experts
    expert = read_lora_expert(folders["rte"])
    assert expert.name == "rte" and (expert.rank, expert.alpha, expert.scaling) == (8, 32.0, 4.0)
    assert sorted(expert.factors) == sorted(f"model.layers.{i}.mlp.{m}" for i in range(2) for m in MLP)
    for layer, (a, b) in expert.factors.items():
        assert torch.equal(a, factors["rte"][layer][0]) and torch.equal(b, factors["rte"][layer][1])
    assert expert.factors["model.layers.0.mlp.down_proj"][0].shape == (8, 48)  # A: (r, in); B: (out, r)
    assert expert.factors["model.layers.0.mlp.down_proj"][1].shape == (32, 8)


def test_task_arithmetic_is_base_plus_03_times_the_sum_of_the_deltas(experts) -> None:  # type: ignore[no-untyped-def]
    base, folders, factors = experts
    before = {key: value.clone() for key, value in base.state_dict().items()}
    merged = task_arithmetic_lora(base, [read_lora_expert(folders[task]) for task in TASKS], 0.3)
    state = merged.state_dict()
    adapted = {f"{layer}.weight" for layer in factors["rte"]}
    assert len(adapted) == 6
    for key, value in before.items():
        assert torch.equal(base.state_dict()[key], value), f"the base model changed at {key}"
        if key in adapted:
            layer = key.removesuffix(".weight")
            delta = sum(4.0 * factors[task][layer][1] @ factors[task][layer][0] for task in TASKS)
            torch.testing.assert_close(state[key], value + 0.3 * delta, rtol=0, atol=1e-6)
            assert not torch.equal(state[key], value)
        else:
            assert torch.equal(state[key], value), f"{key} is not adapted and must stay the base's"
    weights = task_arithmetic_lora(base, [read_lora_expert(folders[task]) for task in TASKS], [0.3, 0.0, 0.0])
    one = task_arithmetic_lora(base, [read_lora_expert(folders["rte"])], 0.3)
    torch.testing.assert_close(weights.state_dict()["model.layers.1.mlp.up_proj.weight"],
                               one.state_dict()["model.layers.1.mlp.up_proj.weight"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("rslora", [False, True])
def test_one_expert_at_coefficient_one_is_peft_merge_and_unload(tmp_path: Path, rslora: bool) -> None:
    base = _base()
    _train_adapter(base, tmp_path / "expert", 7, use_rslora=rslora)
    expert = read_lora_expert(tmp_path / "expert")
    assert expert.scaling == (32 / 8 ** 0.5 if rslora else 4.0)
    ours = task_arithmetic_lora(base, [expert], 1.0)
    peft_model = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "expert").eval()
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapter_logits = peft_model(input_ids=ids).logits
        peft_merged = peft_model.merge_and_unload()
        ours_logits = ours(input_ids=ids).logits
    for key, value in peft_merged.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_logits, adapter_logits, rtol=1e-5, atol=1e-5)


def test_adapters_that_are_not_a_plain_delta_or_do_not_fit_are_refused(tmp_path: Path, experts) -> None:  # type: ignore[no-untyped-def]
    base, folders, _ = experts
    _train_adapter(base, tmp_path / "dora", 1, use_dora=True)
    with pytest.raises(MergeflowError, match="use_dora=true is not supported"):
        read_lora_expert(tmp_path / "dora")
    _train_adapter(base, tmp_path / "rank4", 2, r=4)
    with pytest.raises(MergeflowError, match="different factor shapes"):
        task_arithmetic_lora(base, [read_lora_expert(folders["rte"]), read_lora_expert(tmp_path / "rank4")])
    _train_adapter(_base(intermediate=40), tmp_path / "other_model", 3)
    with pytest.raises(MergeflowError, match="does not take a ΔW of shape"):
        task_arithmetic_lora(base, [read_lora_expert(tmp_path / "other_model")])
    config = json.loads((folders["rte"] / "adapter_config.json").read_text())
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "adapter_config.json").write_text(json.dumps({**config, "r": None}))
    with pytest.raises(MergeflowError, match="not a readable peft LoRA config"):
        read_lora_expert(tmp_path / "broken")
    (tmp_path / "broken" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(MergeflowError, match="no such file"):
        read_lora_expert(tmp_path / "broken")
