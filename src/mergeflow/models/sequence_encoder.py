"""A Hugging Face sequence classifier (RoBERTa, GPT-2, BERT, Qwen2, ...) split into the pipeline's encoder and head.

AdaRank's GLUE experts are ``AutoModelForSequenceClassification`` models: a body that is fine-tuned and merged, and a
head per task that is never merged. The pipeline's text stages expect an encoder module (token ids -> (N, D)
features, its ``state_dict()`` being what experts, task vectors and merges are made of) and a frozen head
(``models.head``). ``SequenceEncoder`` holds the body under its own attribute name (``roberta``, ``transformer``,
``bert``, ``model``), so its state-dict keys are exactly the body keys of the Hugging Face checkpoint, and returns the
one vector per input that the model's head reads: the first token's hidden state (RoBERTa's head takes ``<s>``), the
last real token's (GPT-2, decoder-only models: right padding, so the last non-pad position), or BERT's pooler output.
``SequenceHead`` holds the head submodules under their checkpoint names (``classifier.*``, ``score.*``) and maps that
vector to logits, so ``head(encoder(ids))`` equals the Hugging Face model's own logits (a test checks each family).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.models.text_encoder import pair_segments

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

Pooling = Literal["first", "last", "pooler"]


@dataclass(frozen=True)
class Family:
    """Where a model type's head reads: the pooled position, and whether its head module takes the whole sequence."""

    pooling: Pooling
    head_takes_sequence: bool  # RobertaClassificationHead indexes features[:, 0, :] itself
    pair_segments: bool = False  # BERT was pretrained with segment ids (1 after the first [SEP]); RoBERTa, GPT-2 were not


FAMILIES: dict[str, Family] = {
    "roberta": Family("first", True),
    "xlm-roberta": Family("first", True),
    "camembert": Family("first", True),
    "bert": Family("pooler", False, pair_segments=True),
    "gpt2": Family("last", False),
    "qwen2": Family("last", False),
    "llama": Family("last", False),
    "mistral": Family("last", False),
}


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """The top-level submodules that make up the task head: all with parameters except the body (``base_model_prefix``)."""
    body = getattr(model, "base_model_prefix", "")
    children = dict(model.named_children())
    if not body or body not in children:
        raise MergeflowError(f"{type(model).__name__} has no body submodule {body!r}: load the expert as a "
                             "sequence classifier (AutoModelForSequenceClassification), not as a bare encoder")
    heads = tuple(name for name, child in children.items() if name != body and any(True for _ in child.parameters()))
    if not heads:
        raise MergeflowError(f"{type(model).__name__} has no classification head next to its body {body!r}")
    return heads


def family_of(config: PretrainedConfig) -> Family:
    family = FAMILIES.get(config.model_type)
    if family is None:
        raise MergeflowError(f"sequence classifier of model type {config.model_type!r}: supported types are "
                             f"{', '.join(sorted(FAMILIES))} (where each one's head reads is known)")
    return family


class SequenceEncoder(nn.Module):
    """(N, L) right-padded token ids -> (N, D): the vector the model's own head reads (``Family.pooling``)."""

    def __init__(self, body: nn.Module, prefix: str, config: PretrainedConfig, pad_token_id: int,
                 sep_token_id: int | None = None):
        super().__init__()
        self.prefix = prefix
        self.add_module(prefix, body)
        self.pooling = family_of(config).pooling
        self.pad_token_id = int(pad_token_id)
        # RoBERTa's config keeps a type-vocabulary (of size 1 in roberta-base, 2 in a default config) it never uses
        uses_segments = family_of(config).pair_segments and getattr(config, "type_vocab_size", 1) >= 2
        self.sep_token_id = int(sep_token_id) if uses_segments and sep_token_id is not None else None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.ndim != 2:
            raise MergeflowError(f"sequence encoder: token ids must be (N, L), got shape {tuple(input_ids.shape)}")
        mask = input_ids != self.pad_token_id
        used = torch.nonzero(mask.any(dim=0))  # trailing all-padding columns change nothing (masked, right-padded)
        length = int(used.max()) + 1 if len(used) else 1
        input_ids, mask = input_ids[:, :length], mask[:, :length]
        extra = {}
        if self.sep_token_id is not None:
            extra["token_type_ids"] = pair_segments(input_ids, mask, self.sep_token_id)
        out = getattr(self, self.prefix)(input_ids=input_ids, attention_mask=mask.long(), **extra)
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling == "first":
            return hidden[:, 0]
        positions = torch.arange(length, device=input_ids.device)
        last = (positions * mask).argmax(dim=-1)  # the rightmost real token, as the Hugging Face heads pick it
        return hidden[torch.arange(len(hidden), device=hidden.device), last]


class SequenceHead(nn.Module):
    """The model's head submodules, keys as in the checkpoint: (N, D) pooled vectors -> (N, classes) logits."""

    def __init__(self, modules: Mapping[str, nn.Module], config: PretrainedConfig):
        super().__init__()
        if len(modules) != 1:
            raise MergeflowError(f"a sequence classifier's head must be one submodule, got {sorted(modules)}")
        (self.name, module), = modules.items()
        self.add_module(self.name, module)
        self.takes_sequence = family_of(config).head_takes_sequence

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        module = getattr(self, self.name)
        return module(features[:, None, :]) if self.takes_sequence else module(features)

    @property
    def num_labels(self) -> int:
        return int(self(torch.zeros(1, self.width, dtype=self.dtype)).shape[-1])

    @property
    def width(self) -> int:
        return int(next(p for p in self.parameters() if p.ndim == 2).shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


def split_model(model: PreTrainedModel, pad_token_id: int, sep_token_id: int | None = None) -> tuple[SequenceEncoder, SequenceHead]:
    """(encoder, head) sharing the model's own modules (no copy): the body under ``base_model_prefix``, the rest the head."""
    heads = head_prefixes(model)
    prefix = model.base_model_prefix
    encoder = SequenceEncoder(getattr(model, prefix), prefix, model.config, pad_token_id, sep_token_id)
    return encoder.eval(), SequenceHead({name: getattr(model, name) for name in heads}, model.config).eval()


def config_from_json(text: str, num_labels: int | None = None) -> PretrainedConfig:
    """A stored ``config.to_json_string()`` back as its config class, optionally with another number of labels."""
    from transformers import AutoConfig

    values = json.loads(text)
    model_type = values.pop("model_type")
    if num_labels is not None:
        values.pop("id2label", None), values.pop("label2id", None)
        values["num_labels"] = num_labels
    return AutoConfig.for_model(model_type, **values)


def build_model(config: PretrainedConfig, seed: int = 0) -> PreTrainedModel:
    """A sequence classifier from its config, its weights initialised from ``seed`` (every caller loads or trains them)."""
    from transformers import AutoModelForSequenceClassification

    from mergeflow.models.text_backbone import quiet_transformers

    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(seed)
        return AutoModelForSequenceClassification.from_config(config).eval()


def load_state_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Every key of ``module`` from ``state`` and nothing else, as one readable error otherwise."""
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [key for key in own if key in state and tuple(state[key].shape) != tuple(own[key].shape)]
    if missing or extra or wrong:
        shapes = [(key, tuple(state[key].shape), tuple(own[key].shape)) for key in wrong[:3]]
        raise MergeflowError(f"{what}: does not fit the model (missing {missing[:5]}, unexpected {extra[:5]}, "
                             f"shapes (given, model) {shapes})")
    module.load_state_dict(dict(state), strict=True)


def base_metadata(model: PreTrainedModel, pad_token_id: int, sep_token_id: int | None) -> dict[str, str]:
    """What the base file stores beside the body weights so any stage rebuilds the encoder and any head without the
    source folder: the model's config (the head's class and width), and the token ids the encoder pools by."""
    return {"architecture": "sequence_classifier", "hf_config": model.config.to_json_string(use_diff=False),
            "pad_token_id": str(int(pad_token_id)), "sep_token_id": "" if sep_token_id is None else str(int(sep_token_id))}


def _token_ids(metadata: Mapping[str, str]) -> tuple[int, int | None]:
    sep = metadata.get("sep_token_id", "")
    return int(metadata["pad_token_id"]), (int(sep) if sep else None)


def encoder_from_metadata(metadata: Mapping[str, str], state: Mapping[str, torch.Tensor] | None = None) -> SequenceEncoder:
    """The base file's encoder rebuilt from its metadata (``base_metadata``), with ``state`` loaded strictly if given."""
    if "hf_config" not in metadata:
        raise MergeflowError("the base file is not a sequence classifier's (no hf_config in its metadata); rerun `pretrain`")
    pad, sep = _token_ids(metadata)
    encoder, _ = split_model(build_model(config_from_json(metadata["hf_config"])), pad, sep)
    if state is not None:
        load_state_strict(encoder, state, "the sequence classifier's body")
    return encoder


def head_from_metadata(metadata: Mapping[str, str], num_labels: int, seed: int = 0,
                       state: Mapping[str, torch.Tensor] | None = None) -> SequenceHead:
    """A head of the base's architecture with ``num_labels`` outputs: freshly initialised from ``seed`` (a probe to
    train), or with ``state`` (a stored or brought head) loaded strictly."""
    if "hf_config" not in metadata:
        raise MergeflowError("the base file is not a sequence classifier's (no hf_config in its metadata); rerun `pretrain`")
    model = build_model(config_from_json(metadata["hf_config"], num_labels=num_labels), seed=seed)
    head = SequenceHead({name: getattr(model, name) for name in head_prefixes(model)}, model.config)
    if state is not None:
        load_state_strict(head, state, "the task head")
    return head.eval()
