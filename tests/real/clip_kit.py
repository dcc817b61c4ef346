"""Tiny CLIPs of one architecture in both libraries (open_clip, transformers), and a tiny CLIP tokenizer, all offline.

The two agree exactly: QuickGELU (OpenAI's CLIP, ``quick_gelu=True`` / ``hidden_act="quick_gelu"``), LayerNorm eps 1e-5,
class-token pooling, no bias in the patch embedding, a bias-free projection.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import open_clip
import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

torch.set_num_threads(1)

IMAGE, PATCH, WIDTH, LAYERS, HEADS, MLP, EMBED = 32, 8, 32, 2, 2, 128, 16
CONTEXT = 40  # the tokenizer spells words letter by letter: prompts are long


def tiny_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single characters (no merges): every word is spelled out, so any prompt tokenizes."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + ".,:'\"-")
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    vocab.update({symbol + "</w>": len(symbols) + index for index, symbol in enumerate(symbols)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=CONTEXT)


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Every weight random (LayerNorms too, not 1 and 0), so a swapped or transposed tensor changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("logit_scale"):
                continue
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))


def tiny_open_clip(seed: int = 0) -> open_clip.CLIP:
    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=EMBED,
        vision_cfg={"image_size": IMAGE, "patch_size": PATCH, "width": WIDTH, "layers": LAYERS,
                    "head_width": WIDTH // HEADS, "mlp_ratio": MLP / WIDTH},
        text_cfg={"context_length": 8, "vocab_size": 64, "width": WIDTH, "heads": HEADS, "layers": 1},
        quick_gelu=True,
    )
    _perturb(model, seed)
    return model.eval()


def tiny_hf_config(tokenizer: CLIPTokenizer) -> CLIPConfig:
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    return CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": WIDTH, "intermediate_size": MLP, "num_hidden_layers": 2,
                     "num_attention_heads": HEADS, "max_position_embeddings": CONTEXT, "hidden_act": "quick_gelu", **special},
        vision_config={"hidden_size": WIDTH, "intermediate_size": MLP, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                       "image_size": IMAGE, "patch_size": PATCH, "hidden_act": "quick_gelu"},
        projection_dim=EMBED,
    )


def tiny_hf_clip(tokenizer: CLIPTokenizer, seed: int = 0) -> CLIPModel:
    torch.manual_seed(seed)
    model = CLIPModel(tiny_hf_config(tokenizer))
    _perturb(model, seed)
    return model.eval()


def images(count: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def hf_image_embedding(model: CLIPModel, pixels: torch.Tensor) -> torch.Tensor:
    """The projected class token, spelled out (``get_image_features``' return type differs across transformers versions)."""
    return model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
