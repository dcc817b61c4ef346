"""peft LoRA on the real open_clip tiny ViT: only adapters train, init is the base model, the peft-format files
round-trip, and the extracted factors reproduce the adapted layer through the per-input mixing path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.lora.adapters import LoraSpec, add_lora, load_adapter, lora_factors, lora_state, save_adapter
from mergeflow.lora.mixing import mixed_lora_linear
from mergeflow.models.backbone import create_clip


def _visual() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_clip("mf-vit-tiny").visual.eval()


def test_adapters_start_as_the_base_model_and_only_they_train() -> None:
    visual = _visual()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = visual(x)
    adapted = add_lora(visual, LoraSpec()).eval()
    with torch.no_grad():
        assert torch.equal(adapted(x), before)  # B = 0 at init
    trainable = [name for name, parameter in adapted.named_parameters() if parameter.requires_grad]
    assert trainable and all(".lora_" in name and ".mlp." in name for name in trainable)


def test_saved_adapter_round_trips_and_factors_match_the_layer(tmp_path: Path) -> None:
    spec = LoraSpec(rank=4, alpha=8.0)
    adapted = add_lora(_visual(), spec).eval()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if ".lora_" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    save_adapter(tmp_path / "expert", adapted, spec)
    assert {p.name for p in (tmp_path / "expert").iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    reloaded, reloaded_spec = load_adapter(tmp_path / "expert", _visual())
    assert reloaded_spec.rank == 4 and reloaded_spec.scaling == 2.0
    x = torch.randn(2, 3, 32, 32, generator=generator)
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(x), adapted(x))

    factors = lora_factors(lora_state(adapted))
    layer = adapted.transformer.resblocks[0].mlp.c_fc
    a, b = factors["transformer.resblocks.0.mlp.c_fc"]
    tokens = torch.randn(3, 5, layer.in_features, generator=generator)
    with torch.no_grad():
        expected = layer(tokens)
        mixed = mixed_lora_linear(tokens, layer.base_layer.weight, layer.base_layer.bias, a[None], b[None],
                                  torch.tensor([spec.scaling]), torch.ones(3, 1))
    assert torch.allclose(mixed, expected, atol=1e-5)


def test_a_broken_adapter_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(MergeflowError, match="not a readable LoRA adapter config"):
        load_adapter(tmp_path, _visual())
    with pytest.raises(MergeflowError, match="no LoRA factors"):
        lora_factors({"x": torch.zeros(1)})
