"""Stage prepare@TASK: build one task's train/val/test splits of the offline suite as Parquet."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from mergeflow.data.image_table import ImageSplit, write_split
from mergeflow.data.sources.examples import SourceSplit
from mergeflow.data.suites import task_spec
from mergeflow.data.task_spec import SPLITS
from mergeflow.data.text_table import TextSplit, write_text_split
from mergeflow.data.text_task_spec import TextTaskSpec
from mergeflow.params import Params
from mergeflow.statedict.io import save_tensors
from tasks._paths import split_path, tokens_path
from tasks._stage import require_task, run_stage

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from mergeflow.data.real_texts import TextRows


def build_text(params: Params, spec: TextTaskSpec) -> None:
    """A text task: its sentences as Parquet, and their token ids (the backbone's tokenizer, suite.max_tokens)."""
    from mergeflow.models.text_backbone import load_text_tokenizer
    from mergeflow.models.text_encoder import tokenize

    assert params.suite.max_tokens is not None and params.suite.samples is not None  # checked when params.yaml is loaded
    tokenizer = load_text_tokenizer(params.backbone.pretrained)
    splits = {}
    for split in SPLITS:
        rows, labels, ids = spec.make_split(split, getattr(params.suite.samples, split), params.suite.seed)
        pairs: list[str] | None
        if spec.paired:  # a paired task's maker is a PairSplitMaker: (first, second) rows
            pair_rows = cast("list[tuple[str, str]]", rows)
            texts, pairs = [first for first, _ in pair_rows], [second for _, second in pair_rows]
        else:
            texts, pairs = cast("list[str]", rows), None
        splits[split] = TextSplit(spec.name, split, texts, labels.astype(np.int64), ids, list(spec.class_names), pairs)
    for split, data in splits.items():
        write_text_split(split_path(spec.name, split), data)
        token_ids = tokenize(tokenizer, data.texts, params.suite.max_tokens, pairs=data.pairs)
        save_tensors(tokens_path(spec.name, split), {"token_ids": token_ids, "labels": torch.from_numpy(data.labels)})
        kind = "sentence pairs" if data.pairs is not None else "sentences"
        print(f"{spec.name}/{split}: {len(data.labels)} {kind}, {spec.num_classes} classes, {token_ids.shape[1]} tokens each")


def build_real(params: Params, task: str) -> None:
    """A real task: its splits by the papers' validation rule, written as manifests (reference, content hash, rows);
    a text task's rows are also tokenised here (``write_real_tokens``), an image task's are decoded by each stage."""
    from mergeflow.data.real_manifest import SplitManifest, write_manifest
    from mergeflow.data.sources.content_hash import reference_content_hash
    from mergeflow.data.sources.opening import open_task

    definition = params.suite.real_tasks()[task]
    ref, cache_dir = definition.reference, params.suite.cache_dir
    splits = open_task(definition, cache_dir=cache_dir)
    digest = reference_content_hash(ref, cache_dir=cache_dir)
    caps = params.suite.max_examples
    sources = {"train": (splits.train, ref.train_split), "val": (splits.validation, ref.validation_split or ref.train_split),
               "test": (splits.test, ref.test_split)}
    manifests, views = {}, {}
    for split in SPLITS:
        view, source_split = sources[split]
        rows = view.rows[: getattr(caps, split)] if caps is not None else view.rows
        views[split] = view.select(range(len(rows)))
        manifests[split] = SplitManifest(task, split, ref.to_dict(), source_split, rows, digest, list(splits.class_names),
                                         list(definition.templates), splits.validation_origin if split == "val" else "",
                                         cache_dir)
    if ref.modality == "text":
        write_real_tokens(params, task, views)
    for split, manifest in manifests.items():
        write_manifest(split_path(task, split), manifest)
        print(f"{task}/{split}: {len(manifest.rows)} rows of {ref.describe()}[{manifest.source_split}], "
              f"{len(manifest.class_names)} classes, {digest[:19]}")


def write_real_tokens(params: Params, task: str, views: dict[str, SourceSplit]) -> None:
    """Each split's sentences (pairs as pairs) as token ids of the backbone's tokenizer, ``suite.max_tokens`` long."""
    from mergeflow.data.real_texts import read_text_rows
    from mergeflow.models.text_backbone import load_text_tokenizer
    from mergeflow.models.text_encoder import tokenize

    assert params.suite.max_tokens is not None  # checked when params.yaml is loaded
    tokenizer = load_text_tokenizer(params.backbone.pretrained)
    tensors = {}
    for split, view in views.items():  # all read and tokenised before any is written
        rows = read_text_rows(view, f"read {task}/{split}")
        if params.backbone.architecture == "causal_lm":
            token_ids = prompted_token_ids(params, task, split, rows, tokenizer)
        else:
            token_ids = tokenize(tokenizer, rows.firsts, params.suite.max_tokens, pairs=rows.seconds)
        tensors[split] = {"token_ids": token_ids, "labels": torch.tensor(rows.labels, dtype=torch.int64)}
    for split, stored in tensors.items():
        save_tensors(tokens_path(task, split), stored)


def prompted_token_ids(params: Params, task: str, split: str, rows: TextRows, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """A causal LM's inputs: each row in its GLUE task's prompt, ending where the label word follows."""
    from mergeflow.data.sources.glue import glue_task_of
    from mergeflow.language.causal_lm import prompt_token_ids

    assert params.suite.max_tokens is not None  # checked when params.yaml is loaded
    glue = glue_task_of(params.suite.real_tasks()[task])
    assert glue is not None  # checked when params.yaml is loaded
    columns = [rows.firsts] if rows.seconds is None else [rows.firsts, rows.seconds]
    prompts = [glue.render_texts(texts) for texts in zip(*columns, strict=True)]
    token_ids, cut = prompt_token_ids(tokenizer, prompts, params.suite.max_tokens, tokenizer.pad_token_id)
    if cut:
        print(f"{task}/{split}: {cut} of {len(prompts)} prompts longer than suite.max_tokens kept their last "
              f"{params.suite.max_tokens} tokens")
    return token_ids


def build(args: argparse.Namespace, params: Params) -> None:
    require_task(params, args.item)
    if params.suite.source == "real":
        build_real(params, args.item)
        return
    spec = task_spec(params.suite.name, args.item)
    if isinstance(spec, TextTaskSpec):
        build_text(params, spec)
        return
    assert params.suite.image_size is not None and params.suite.samples is not None  # checked when params.yaml is loaded
    splits = {}
    for split in SPLITS:  # build every split before writing any, so a failure leaves no partial task behind
        n = getattr(params.suite.samples, split)
        images, labels, ids = spec.make_split(split, n, params.suite.seed, params.suite.image_size)
        splits[split] = ImageSplit(spec.name, split, images, labels.astype(np.int64), ids, list(spec.class_names))
    for split, data in splits.items():
        write_split(split_path(spec.name, split), data)
        print(f"{spec.name}/{split}: {len(data.labels)} images, {spec.num_classes} classes")


if __name__ == "__main__":
    run_stage("prepare", "Generate one task's splits (deterministic, offline) into artifacts/data/TASK/.", build,
              item_help="task name from suite.tasks")
