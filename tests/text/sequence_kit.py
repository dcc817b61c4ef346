"""Tiny random RoBERTa, GPT-2 and BERT checkpoints in the public Hugging Face formats, for the sequence-classifier path.

A base is saved as its pretraining model (``RobertaForMaskedLM``, ``GPT2LMHeadModel``, ``BertForMaskedLM``: no
classifier, as ``roberta-base`` and ``gpt2`` are published) with a byte-level BPE tokenizer (RoBERTa's and GPT-2's
``vocab.json`` + ``merges.txt`` format; no merges, so every byte is a token, which any text tokenises into). Experts
are ``AutoModelForSequenceClassification`` folders fine-tuned-style (every weight moved) from that base, one per task.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    BertTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Tokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaTokenizer,
)

SIZE = {"hidden": 16, "layers": 2, "heads": 2, "mlp": 32, "positions": 80}


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE: printable Latin-1 bytes stand for themselves, the rest are
    shifted past 255 in byte order (the published GPT-2 convention)."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    symbols, shifted = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def _byte_bpe(folder: Path, specials_first: list[str], specials_last: list[str]) -> tuple[Path, Path]:
    vocab = {token: index for index, token in enumerate([*specials_first, *byte_symbols(), *specials_last])}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder / "vocab.json", folder / "merges.txt"


def tiny_base(folder: Path, family: str, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A pretraining-style base of ``family`` (roberta | gpt2 | bert) and its tokenizer, saved to ``folder``."""
    files = folder.parent / f".{folder.name}-tokenizer-files"
    tokenizer: PreTrainedTokenizerBase
    if family == "roberta":
        tokenizer = RobertaTokenizer(*map(str, _byte_bpe(files, ["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"])))
        config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=SIZE["hidden"], num_hidden_layers=SIZE["layers"],
                               num_attention_heads=SIZE["heads"], intermediate_size=SIZE["mlp"],
                               max_position_embeddings=SIZE["positions"], pad_token_id=1, bos_token_id=0, eos_token_id=2)
        make = RobertaForMaskedLM
    elif family == "gpt2":
        tokenizer = GPT2Tokenizer(*map(str, _byte_bpe(files, [], ["<|endoftext|>"])))
        eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=SIZE["hidden"], n_layer=SIZE["layers"], n_head=SIZE["heads"],
                            n_inner=SIZE["mlp"], n_positions=SIZE["positions"], bos_token_id=eos, eos_token_id=eos)
        make = GPT2LMHeadModel
    elif family == "bert":
        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789.,'!?-"]
        files.mkdir(parents=True, exist_ok=True)
        (files / "vocab.txt").write_text("\n".join(words) + "\n")
        tokenizer = BertTokenizer(str(files / "vocab.txt"))
        config = BertConfig(vocab_size=len(words), hidden_size=SIZE["hidden"], num_hidden_layers=SIZE["layers"],
                            num_attention_heads=SIZE["heads"], intermediate_size=SIZE["mlp"],
                            max_position_embeddings=SIZE["positions"])
        make = BertForMaskedLM
    else:
        raise ValueError(family)
    torch.manual_seed(seed)
    model = make(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


def tiny_expert(base: Path, folder: Path, num_labels: int, seed: int, scale: float = 0.05) -> PreTrainedModel:
    """A fine-tuned-style sequence classifier from ``base``: body and head both moved by seeded noise."""
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=num_labels)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn_like(parameter))
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (base / name).exists():
            (folder / name).write_bytes((base / name).read_bytes())
    return model.eval()


LABEL_WORDS = ("negative", "positive", "no", "yes", "True", "False", "Neither")  # every GLUE task's, as one token each


def tiny_causal_lm(folder: Path, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A tiny random ``Qwen2ForCausalLM`` (tied embeddings, as Qwen2.5-0.5B) and a byte-level BPE tokenizer in Qwen2's
    ``vocab.json`` + ``merges.txt`` format whose merges spell each GLUE label word, with its leading space, as one
    token (Qwen's real vocabulary does too), saved to ``folder``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    space = byte_symbols()[ord(" ")]
    merges: list[tuple[str, str]] = []
    for word in LABEL_WORDS:
        symbols = [space, *word]
        for end in range(1, len(symbols)):
            pair = ("".join(symbols[:end]), symbols[end])
            if pair not in merges:
                merges.append(pair)
    tokens = [*byte_symbols(), *dict.fromkeys(left + right for left, right in merges), "<|endoftext|>"]
    files = folder.parent / f".{folder.name}-tokenizer-files"
    files.mkdir(parents=True, exist_ok=True)
    (files / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    (files / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges))
    tokenizer = Qwen2Tokenizer(str(files / "vocab.json"), str(files / "merges.txt"), pad_token="<|endoftext|>",
                               eos_token="<|endoftext|>", unk_token=None, bos_token=None)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(vocab_size=len(tokens), hidden_size=SIZE["hidden"], intermediate_size=SIZE["mlp"],
                         num_hidden_layers=SIZE["layers"], num_attention_heads=SIZE["heads"], num_key_value_heads=1,
                         max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=eos, eos_token_id=eos,
                         bos_token_id=None)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


def tiny_peft_adapter(base: Path, folder: Path, targets: tuple[str, ...], rank: int, alpha: float, seed: int) -> None:
    """A peft LoRA adapter of the causal LM at ``base`` saved as ``PeftModel.save_pretrained`` writes it, its B factors
    moved off zero (a trained adapter's) so it changes the model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.1, target_modules=list(targets)))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    model.save_pretrained(folder)
