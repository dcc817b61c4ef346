"""What merge stages read: theta_0's image encoder and the task vectors (kept apart from tasks/_artifacts.py so
editing merge plumbing does not invalidate the fine-tuning stages that depend on that module)."""

from __future__ import annotations

import torch

from mergeflow.statedict.io import load_tensors, read_safetensors
from mergeflow.statedict.subdict import visual_state_dict
from tasks._paths import BASE_MODEL, task_vector_path


def load_base_visual() -> dict[str, torch.Tensor]:
    """theta_0's encoder: what task vectors are relative to and merged deltas are added to. A vision base file holds
    a whole CLIP (its ``visual.*`` part is the encoder); a text base file holds the text encoder alone."""
    tensors, metadata = read_safetensors(BASE_MODEL)
    return tensors if metadata.get("kind") == "text" else visual_state_dict(tensors)


def load_task_vectors(tasks: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """{task: tau_task} in suite order (the order merging methods see and mask banks store)."""
    return {task: load_tensors(task_vector_path(task)) for task in tasks}
