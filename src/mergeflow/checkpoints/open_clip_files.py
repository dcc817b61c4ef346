"""open_clip checkpoints as the papers publish them, read without ever unpickling.

TALL masks (nik-dim/tall_masks) saves each encoder as a *state dict* (``<root>/<Task>Val/nonlinear_finetuned.pt``,
``nonlinear_zeroshot.pt``, root = one model's folder such as ``ViT-B-32``): open_clip CLIP keys under a ``model.``
prefix, with the text transformer deleted but other text-tower keys left in. ``torch.load(weights_only=True)`` reads
those safely. task_vectors (mlfoundations/task_vectors) saves whole *pickled modules*: loading one runs code from the
file and needs the classes it was saved with, so mergeflow refuses it and names the one-time conversion
(``mergeflow convert-checkpoint IN OUT --trust-pickle``), which the user runs only for files they trust.
"""

from __future__ import annotations

import os
import pickle
import re
import shlex
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from mergeflow.checkpoints.clip_keys import open_clip_vision
from mergeflow.errors import MergeflowError
from mergeflow.statedict.io import check_finite, read_safetensors

MODEL_PREFIX = "model."  # TALL masks' and task_vectors' ImageEncoder keeps the open_clip CLIP as `self.model`


def tall_masks_path(root: str | os.PathLike[str], task: str, which: Literal["finetuned", "zeroshot"] = "finetuned") -> Path:
    """Where TALL masks keeps a task's encoder: ``<root>/<Task>Val/nonlinear_<which>.pt`` (``root``: e.g. ``.../ViT-B-32``)."""
    return Path(root) / f"{task}Val" / f"nonlinear_{which}.pt"


def conversion_command(path: str | os.PathLike[str]) -> str:
    """The shell command that converts a pickled checkpoint once, for the messages that refuse it."""
    source = Path(path)
    return f"mergeflow convert-checkpoint {shlex.quote(str(source))} {shlex.quote(str(source.with_suffix('.safetensors')))} --trust-pickle"


def _flat_tensors(loaded: object, path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A loaded object as a flat ``{name: tensor}``: a state dict as it is, a module's ``state_dict()``."""
    if isinstance(loaded, nn.Module):
        loaded = loaded.state_dict()
    if not isinstance(loaded, dict) or not loaded:
        raise MergeflowError(f"{path}: holds a {type(loaded).__name__}, not a state dict (a non-empty mapping of names to tensors)")
    wrong = [key for key, value in loaded.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if wrong:
        raise MergeflowError(f"{path}: entries that are not tensors: {[str(key) for key in wrong[:5]]}; a nested "
                             "checkpoint (e.g. {'state_dict': ...}) must be flattened first")
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for key, value in loaded.items():  # a copy of each entry whose storage an earlier one uses: safetensors refuses
        storage = value.untyped_storage().data_ptr()  # shared storage (tied weights), and entries are saved apart
        tensors[key] = value.detach().clone() if storage in storages else value.detach()
        storages.add(storage)
    check_finite(tensors, str(path))
    return tensors


def read_torch_state_dict(path: str | os.PathLike[str], trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A ``.pt`` state dict, read with ``torch.load(weights_only=True)``.

    A pickled object (a whole module) is refused with the command that converts it, unless ``trust_pickle``: then it
    is unpickled (:func:`unpickle_state_dict`), as only ``mergeflow convert-checkpoint --trust-pickle`` asks.
    """
    if not os.path.isfile(path):
        raise MergeflowError(f"{path}: no such file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if trust_pickle:
            return unpickle_state_dict(path)
        reason = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:  # not a class the reader refused, but bytes it cannot read: damaged, or not torch.save's
            raise MergeflowError(f"{path}: not a readable torch checkpoint (torch's weights-only reader: "
                                 f"{reason.group(1) if reason else str(exc).splitlines()[0]})") from None
        raise MergeflowError(
            f"{path}: is a pickled Python object (it names {found.group(1)}; e.g. a whole nn.Module, as "
            "mlfoundations/task_vectors saves them), not a plain state dict; mergeflow never unpickles when it reads "
            "checkpoints, because unpickling runs code from the file. If you trust its source, convert it once: "
            f"`{conversion_command(path)}`") from None
    except Exception as exc:  # torch.load reports a damaged or foreign file as KeyError, RuntimeError, EOFError, ...
        raise MergeflowError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    return _flat_tensors(loaded, path)


def unpickle_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a pickled module or dict, unpickling it (it may run code from the file: trusted files only).

    The pickle names the classes it was saved with (task_vectors' ``ImageEncoder``, old open_clip's
    ``VisualTransformer``): they must be importable where this runs.
    """
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ImportError) as exc:
        raise MergeflowError(
            f"{path}: unpickling needs the Python classes the file was saved with ({exc}); run the conversion where they "
            "import, e.g. with the repository that saved it (mlfoundations/task_vectors: its `src` folder) on PYTHONPATH "
            "and the open_clip version it used") from exc
    except Exception as exc:
        raise MergeflowError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(loaded, (nn.Module, dict)) and callable(getattr(loaded, "state_dict", None)):
        loaded = loaded.state_dict()
    return _flat_tensors(loaded, path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor of a ``.safetensors`` file or of a ``.pt`` state dict (never unpickled), keys as stored."""
    if str(path).endswith(".safetensors"):
        return read_safetensors(path)[0]
    return read_torch_state_dict(path)


def open_clip_vision_state(state: dict[str, torch.Tensor], where: str = "the state dict") -> dict[str, torch.Tensor]:
    """The image tower, in open_clip ``visual.*`` keys, of an open_clip CLIP state dict with or without ``model.``.

    The prefix is stripped only when every key has it (an ``ImageEncoder``'s state); leftover text-tower keys are
    dropped by name, anything else is refused (:func:`mergeflow.checkpoints.clip_keys.open_clip_vision`).
    """
    if all(key.startswith(MODEL_PREFIX) for key in state):
        state = {key.removeprefix(MODEL_PREFIX): value for key, value in state.items()}
    return open_clip_vision(state, where)


def load_open_clip_vision(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The open_clip image tower (``visual.*`` keys) of a TALL-masks ``.pt``, an open_clip state dict, or a
    ``.safetensors`` file written by ``mergeflow convert-checkpoint``."""
    return open_clip_vision_state(read_checkpoint(path), str(path))
