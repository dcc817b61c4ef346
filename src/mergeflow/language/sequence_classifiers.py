"""Hugging Face sequence-classification experts (RoBERTa, GPT-2, ...): a shared body that is merged, and a head per task.

AdaRank's GLUE setting fine-tunes one ``AutoModelForSequenceClassification`` per task. The body (``roberta.*``,
``transformer.*``) starts from the same pretrained model in every expert, so task vectors and merges are taken over
it; the head (``classifier.*`` for RoBERTa, ``score.*`` for GPT-2) is trained from scratch per task, with as many
outputs as the task has classes, so it is never merged: each task's evaluation puts its own head on the merged body.

Which keys are the head is read from the architecture, not from key names: transformers names the body submodule in
``base_model_prefix`` (``roberta``, ``transformer``); every other top-level submodule with parameters is the head.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mergeflow.errors import MergeflowError
from mergeflow.models.sequence_encoder import head_prefixes
from mergeflow.models.text_backbone import quiet_transformers
from mergeflow.statedict.task_vectors import check_compatible

if TYPE_CHECKING:  # importing transformers costs about a second; only loading needs it
    from transformers import PretrainedConfig, PreTrainedModel


@dataclass(frozen=True)
class SequenceExpert:
    """One task's fine-tuned classifier, split: ``body`` is merged, ``head`` (keys under ``head_prefixes``) is not."""

    name: str
    config: PretrainedConfig
    body: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    head_prefixes: tuple[str, ...]

    @property
    def num_labels(self) -> int:
        return len(self.config.id2label or {})


@dataclass(frozen=True)
class SequencePool:
    """The pretrained body and every task's expert, checked to share the body's keys and shapes."""

    base_body: dict[str, torch.Tensor]
    experts: dict[str, SequenceExpert]

    def bodies(self) -> dict[str, dict[str, torch.Tensor]]:
        """{task: body state dict}: what task vectors and merging methods take."""
        return {name: expert.body for name, expert in self.experts.items()}


def split_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], tuple[str, ...]]:
    """(body, head, head prefixes) of the model's state dict; every key is in exactly one of the two."""
    prefixes = head_prefixes(model)
    body: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        (head if key.split(".", 1)[0] in prefixes else body)[key] = value.detach().clone()
    return body, head, prefixes


def resolve_source(source: str | os.PathLike[str]) -> str:
    """A local folder (checked for a config.json) or a hub id such as ``tanganke/gpt2_sst2`` (passed on as it is).

    A path object, or text that starts like a path or has more than one slash, is a folder: a typo in it must not turn
    into a hub lookup.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists() or isinstance(source, os.PathLike) or text.startswith((".", "/", "~")) or text.count("/") > 1:
        if not (path / "config.json").is_file():
            raise MergeflowError(f"sequence classifier {path}: no such model folder (a Hugging Face folder has a config.json)")
        return str(path)
    return text


def from_pretrained_with_info(auto_class: Any, where: str, dtype: torch.dtype, what: str) -> tuple[Any, dict[str, Any]]:
    """(model, loading info) of ``auto_class.from_pretrained``, quietly; a load failure is one readable error."""
    try:
        with quiet_transformers():
            model, info = auto_class.from_pretrained(where, output_loading_info=True, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise MergeflowError(f"{what} {where!r} could not be loaded ({str(exc).splitlines()[0]}); a hub id needs network "
                             "access or the local cache (HF_HUB_OFFLINE=1), or give a local folder") from exc
    return model, info


def load_sequence_classifier(source: str | os.PathLike[str], *, head_required: bool = True,
                             dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """``AutoModelForSequenceClassification`` from a local folder or a hub id, in eval mode and in ``dtype``.

    Every body weight must come from the checkpoint (a missing one would silently stay random). The head must too,
    unless ``head_required`` is False: a pretrained base such as ``roberta-base`` has a body and no classifier, and
    only its body is used.
    """
    from transformers import AutoModelForSequenceClassification

    where = resolve_source(source)
    model, info = from_pretrained_with_info(AutoModelForSequenceClassification, where, dtype, "sequence classifier")
    prefixes = head_prefixes(model)
    missing = sorted(info.get("missing_keys", ()))
    if not head_required:
        missing = [key for key in missing if key.split(".", 1)[0] not in prefixes]
    mismatched = sorted(str(key) for key in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise MergeflowError(f"sequence classifier {where!r}: the checkpoint lacks {missing[:5]} / mismatches {mismatched[:5]}; "
                             "those weights would stay random")
    _pad_with_eos(model.config)
    return model.eval()


def _pad_with_eos(config: PretrainedConfig) -> None:
    """GPT-2's public checkpoints have no pad token, and its sequence classifier finds each row's last token by the pad
    id (without one it refuses batches of more than one row): pad with the end-of-text token, as the GLUE fine-tuning
    recipes for GPT-2 do. Models with a pad token keep theirs."""
    if getattr(config, "pad_token_id", None) is None and getattr(config, "eos_token_id", None) is not None:
        eos = config.eos_token_id
        config.pad_token_id = eos[0] if isinstance(eos, list) else eos


def load_expert(name: str, source: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> SequenceExpert:
    """One fine-tuned expert, split into body and head."""
    model = load_sequence_classifier(source, dtype=dtype)
    body, head, prefixes = split_state(model)
    return SequenceExpert(name, model.config, body, head, prefixes)


def check_pool(base_body: Mapping[str, torch.Tensor], base_config: PretrainedConfig, experts: Mapping[str, SequenceExpert]) -> None:
    """Every expert has the base's architecture and exactly the base body's keys, shapes and dtypes."""
    if not experts:
        raise MergeflowError("need at least one expert")
    for name, expert in experts.items():
        if expert.config.model_type != base_config.model_type:
            raise MergeflowError(f"expert {name!r} is a {expert.config.model_type} model, the base is {base_config.model_type}: "
                                 "experts must be fine-tuned from the base")
        check_compatible(dict(base_body), expert.body, f"expert {name!r}")


def load_pool(base: str | os.PathLike[str], experts: Mapping[str, str | os.PathLike[str]],
              dtype: torch.dtype = torch.float32) -> SequencePool:
    """The base body (its head, if any, is dropped) and every expert, checked against each other (``check_pool``)."""
    base_model = load_sequence_classifier(base, head_required=False, dtype=dtype)
    base_body, _, _ = split_state(base_model)
    loaded = {name: load_expert(name, source, dtype) for name, source in experts.items()}
    check_pool(base_body, base_model.config, loaded)
    return SequencePool(base_body, loaded)


def classifier_for_task(body: Mapping[str, torch.Tensor], expert: SequenceExpert, model: PreTrainedModel | None = None) -> PreTrainedModel:
    """A model for evaluating ``expert``'s task: the given (merged) body with that task's own head, in eval mode.

    ``model`` is reused (loaded in place) when given, e.g. one model per head shape across tasks; otherwise one is
    built from the expert's config (its random initialisation is overwritten entirely: the load is strict).
    """
    if model is None:
        from transformers import AutoModelForSequenceClassification

        with quiet_transformers():
            model = AutoModelForSequenceClassification.from_config(expert.config, dtype=next(iter(expert.head.values())).dtype)
    assert model is not None
    state = {**body, **expert.head}
    if sorted(state) != sorted(model.state_dict()):
        extra, missing = sorted(set(state) - set(model.state_dict())), sorted(set(model.state_dict()) - set(state))
        raise MergeflowError(f"task {expert.name!r}: the merged body + head do not fit the model "
                             f"(unexpected {extra[:5]}, missing {missing[:5]})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise MergeflowError(f"task {expert.name!r}: the merged body + head do not fit the model ({first})") from exc
    return model.eval()
