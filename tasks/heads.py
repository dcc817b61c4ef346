"""Stage heads: one frozen head per task, shared by every method: zero-shot from class-name prompts through the
CLIP text tower (vision suites), class prototypes of the pretrained encoder (text suites), or a sequence
classifier's own head (``heads.checkpoints``: a brought expert's) or a linear probe on the frozen body."""

from __future__ import annotations

import argparse

import torch

from mergeflow.data.suites import task_spec
from mergeflow.data.task_spec import TaskSpec
from mergeflow.errors import MergeflowError
from mergeflow.models.backbone import clip_tokenizer, load_clip
from mergeflow.models.heads import zero_shot_head
from mergeflow.models.sequence_encoder import SequenceHead, head_from_metadata
from mergeflow.models.text_heads import prototype_head
from mergeflow.params import Params
from mergeflow.statedict.io import save_tensors
from tasks._artifacts import base_encoder, base_file_metadata, is_text, load_split_tensors
from tasks._paths import BASE_MODEL, head_path, split_path
from tasks._runtime import stage_runtime
from tasks._stage import run_stage


def text_heads(params: Params) -> dict[str, tuple[torch.Tensor, list[str]]]:
    """Class-prototype heads from the pretrained text encoder (models/text_heads.py says why not prompts), with each
    task's class names: an offline suite's registry's, or a real task's (its prepared manifest: the dataset's own)."""
    encoder = base_encoder(params)
    heads = {}
    for task in params.suite.tasks:
        _, token_ids, labels = load_split_tensors(task, "train")
        names = _class_names(params, task)
        heads[task] = (prototype_head(encoder, token_ids, labels, len(names)), names)
    return heads


def _class_names(params: Params, task: str) -> list[str]:
    if params.suite.source == "real":
        from mergeflow.data.real_manifest import read_manifest

        return list(read_manifest(split_path(task, "train")).class_names)
    return list(task_spec(params.suite.name, task).class_names)


def _image_spec(params: Params, task: str) -> TaskSpec:
    """A vision suite's task (its prompt templates make the zero-shot head)."""
    spec = task_spec(params.suite.name, task)
    if not isinstance(spec, TaskSpec):
        raise MergeflowError(f"heads: {task!r} is a text task, but suite {params.suite.name!r} is built as a vision suite")
    return spec


def real_heads(params: Params) -> dict[str, tuple[torch.Tensor, list[str]]]:
    """A real suite's zero-shot heads: each task's class names (its prepared manifest: the dataset's own) x its
    templates, through the backbone's text tower: open_clip's, or the Hugging Face CLIP's the base was converted from."""
    from mergeflow.checkpoints.sources import hf_clip_source
    from mergeflow.data.real_manifest import read_manifest

    manifests = {task: read_manifest(split_path(task, "train")) for task in params.suite.tasks}
    hf_source = hf_clip_source(params.backbone.pretrained)
    if hf_source is not None:
        from mergeflow.checkpoints.hf_clip import hf_zero_shot_head, load_hf_clip, load_hf_tokenizer

        model, tokenizer = load_hf_clip(hf_source), load_hf_tokenizer(hf_source)
        return {task: (hf_zero_shot_head(model, tokenizer, m.class_names, m.templates), m.class_names)
                for task, m in manifests.items()}
    clip = load_clip(BASE_MODEL, params.backbone.model)
    open_clip_tokenizer = clip_tokenizer(params.backbone.model)
    return {task: (zero_shot_head(clip, open_clip_tokenizer, m.class_names, m.templates), m.class_names)
            for task, m in manifests.items()}


def sequence_heads(params: Params) -> dict[str, tuple[SequenceHead, list[str], str]]:
    """Each task's sequence-classifier head with its class names and where it came from: the head of
    ``heads.checkpoints.<task>`` (it must have as many labels as the task has classes), or a probe trained on the
    frozen base body's features of the train split with ``heads.probe``."""
    from mergeflow.language.sequence_classifiers import load_sequence_classifier, split_state
    from mergeflow.routing.features import extract_features
    from mergeflow.training.loop import OptimConfig
    from mergeflow.training.probe import train_probe

    metadata = base_file_metadata()
    device, autocast = stage_runtime(params)
    encoder = None
    heads = {}
    for task in params.suite.tasks:
        names = _class_names(params, task)
        source = params.heads.checkpoints.get(task)
        if source is not None:
            brought = load_sequence_classifier(source)
            if brought.config.num_labels != len(names):
                raise MergeflowError(f"heads.checkpoints.{task}: {source} classifies into {brought.config.num_labels} labels, "
                                     f"the task has {len(names)} classes; bring that task's own fine-tuned classifier")
            _, state, _ = split_state(brought)
            head = head_from_metadata(metadata, len(names), state=state)
            heads[task] = (head, names, f"checkpoint {source}")
            continue
        probe = params.heads.probe
        assert probe is not None  # checked when params.yaml is loaded
        if encoder is None:
            encoder = base_encoder(params).to(device)
        _, token_ids, labels = load_split_tensors(task, "train")
        with torch.no_grad():
            features = extract_features(encoder, token_ids, probe.batch_size, f"probe features {task}", device, autocast)
        head = head_from_metadata(metadata, len(names), seed=probe.seed)
        losses = train_probe(head, features, labels, OptimConfig(**probe.model_dump()), f"probe {task}", device=device,
                             autocast=autocast)
        heads[task] = (head.cpu(), names, f"probe: loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps")
    return heads


def label_word_heads(params: Params) -> dict[str, tuple[torch.nn.Linear, list[str], list[str], list[int]]]:
    """Each task's head for a causal LM: the LM head's rows at its GLUE label words' tokens, with the class names,
    the words and their token ids (``mergeflow.language.causal_lm``)."""
    from mergeflow.data.sources.glue import glue_task_of
    from mergeflow.language.causal_lm import label_word_head, label_word_ids, load_causal_lm
    from mergeflow.models.text_backbone import load_text_tokenizer

    assert params.backbone.pretrained is not None  # checked when params.yaml is loaded
    model, tokenizer = load_causal_lm(params.backbone.pretrained), load_text_tokenizer(params.backbone.pretrained)
    heads = {}
    for task, definition in params.suite.real_tasks().items():
        glue = glue_task_of(definition)
        assert glue is not None  # checked when params.yaml is loaded
        words = list(glue.label_words)
        ids = label_word_ids(tokenizer, words)
        heads[task] = (label_word_head(model, ids), _class_names(params, task), words, ids)
    return heads


def build(args: argparse.Namespace, params: Params) -> None:
    if params.backbone.architecture == "causal_lm":
        _save_modules({task: (layer, {"task": task, "classes": "|".join(names), "head_kind": "label_words",
                                      "label_words": "|".join(words), "token_ids": ",".join(map(str, ids))},
                              f"label words {words} (tokens {ids}) of the LM head")
                       for task, (layer, names, words, ids) in label_word_heads(params).items()})
        return
    if is_text(params) and params.backbone.architecture == "sequence_classifier":
        _save_modules({task: (head, {"task": task, "classes": "|".join(names), "head_kind": "sequence",
                                     "num_labels": str(len(names)), "origin": origin}, f"{len(names)} classes, {origin}")
                       for task, (head, names, origin) in sequence_heads(params).items()})
        return
    if is_text(params) or params.suite.source == "real":
        heads = text_heads(params) if is_text(params) else real_heads(params)
        _save(params, {task: head for task, (head, _) in heads.items()}, {task: names for task, (_, names) in heads.items()})
        return
    clip = load_clip(BASE_MODEL, params.backbone.model)
    tokenizer = clip_tokenizer(params.backbone.model)
    specs = [_image_spec(params, task) for task in params.suite.tasks]
    _save(params, {spec.name: zero_shot_head(clip, tokenizer, spec.class_names, spec.templates) for spec in specs})


def _save_modules(heads: dict[str, tuple[torch.nn.Module, dict[str, str], str]]) -> None:
    """Head modules (their state dicts, with metadata saying how ``load_head`` rebuilds them), written once all are
    computed."""
    for task, (module, metadata, summary) in heads.items():
        save_tensors(head_path(task), {k: v.contiguous() for k, v in module.state_dict().items()}, metadata=metadata)
        print(f"head {task}: {summary}")


def _save(params: Params, heads: dict[str, torch.Tensor], class_names: dict[str, list[str]] | None = None) -> None:
    """Write every head once all are computed (a failure leaves none behind)."""
    for task, head in heads.items():
        names = class_names[task] if class_names is not None else task_spec(params.suite.name, task).class_names
        save_tensors(head_path(task), {"head": head}, metadata={"task": task, "classes": "|".join(names)})
        print(f"head {task}: {tuple(head.shape)}")


if __name__ == "__main__":
    run_stage("heads", "Compute each task's frozen head: zero-shot from the text tower (vision) or class prototypes (text).", build)
