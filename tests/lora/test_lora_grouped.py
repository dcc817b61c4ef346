"""Grouped LoRA serving (issue 17): batches whose coefficient rows each name at most one expert are served group by
group through that expert alone, and equal the per-token mixing path (atol 1e-5 on the real tiny ViT)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_lora_serving import _experts, _pixels

from mergeflow.lora import mixed_encoder as mixed_module
from mergeflow.lora.mixed_encoder import MixedEncoder, single_expert_groups
from mergeflow.lora.policies import ExpertPolicy, serve

ATOL = 1e-5


def test_single_expert_groups() -> None:
    rows = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.3]])
    found = single_expert_groups(rows)
    assert found is not None
    index, groups = found
    assert groups == [(None, 0.0), (0, 0.5), (1, 1.0), (2, pytest.approx(0.3))]
    assert index.tolist() == [2, 0, 1, 2, 3]
    assert single_expert_groups(torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])) is None


@pytest.mark.parametrize("update", ["low_rank", "merged"])
def test_grouped_equals_mixing(update: str) -> None:
    base, adapted, bank = _experts()
    grouped = MixedEncoder(base, bank, group_update=update)  # type: ignore[arg-type]
    mixing = MixedEncoder(base, bank, grouped=False)
    pixels = _pixels(9)
    experts = torch.tensor([2, 0, 1, 1, 2, 0, 0, 2, 1])
    one_hot = F.one_hot(experts, 3).float()
    scaled = one_hot * torch.tensor([0.5, 1.0, 0.25, 1.0, 1.0, 0.7, 1.0, 1.0, 2.0]).unsqueeze(1)
    scaled[4] = 0.0  # a base-model row
    with torch.no_grad():
        for rows in (one_hot, scaled):
            assert torch.allclose(grouped(pixels, rows), mixing(pixels, rows), atol=ATOL)
        # and each group is its peft expert, as the mixing path is
        for expert, module in enumerate(adapted):
            chosen = experts == expert
            assert torch.allclose(grouped(pixels, one_hot)[chosen], module(pixels[chosen]), atol=ATOL)


def test_serve_picks_the_grouped_path_for_one_hot_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    base, _, bank = _experts()
    encoder = MixedEncoder(base, bank)
    calls: list[object] = []
    original = MixedEncoder._encode_group

    def counting(self: MixedEncoder, pixels: torch.Tensor, group: tuple[int | None, float]) -> torch.Tensor:
        calls.append(group)
        return original(self, pixels, group)

    monkeypatch.setattr(MixedEncoder, "_encode_group", counting)
    mixed_calls: list[object] = []
    original_mix = mixed_module.mixed_lora_linear
    monkeypatch.setattr(mixed_module, "mixed_lora_linear", lambda *args: mixed_calls.append(1) or original_mix(*args))
    heads = [torch.randn(4, 128, generator=torch.Generator().manual_seed(index)) for index in range(3)]
    pixels, tasks = _pixels(6), torch.tensor([0, 2, 2, 1, 0, 2])
    predicted, coefficients = serve(ExpertPolicy(encoder), heads, pixels, tasks)
    assert calls == [(0, 1.0), (1, 1.0), (2, 1.0)] and not mixed_calls  # one pass per expert, no per-token mixing
    reference = MixedEncoder(base, bank, grouped=False)
    expected, _ = serve(ExpertPolicy(reference), heads, pixels, tasks)
    assert torch.equal(predicted, expected)
    # rows mixing two experts still take the mixing path
    calls.clear()
    with torch.no_grad():
        encoder(pixels, torch.full((6, 3), 1 / 3))
    assert not calls and mixed_calls
