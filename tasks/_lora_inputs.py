"""What the LoRA-expert stages read: every task's adapter stacked into a factor bank, the base encoder, and a
policy file's tensors and settings (kept apart from the full-expert plumbing so neither invalidates the other)."""

from __future__ import annotations

import json
from typing import Any

import torch

from mergeflow.errors import MergeflowError
from mergeflow.lora.bank import FactorBank, stack_factors
from mergeflow.lora.router_encoder import RouterEmbedder, load_router_embedder
from mergeflow.params import Params
from mergeflow.statedict.io import read_safetensors, save_tensors
from tasks._paths import lora_adapter_dir, lora_policy_path
from tasks._routing_inputs import load_encoder

POLICY_FORMAT = "mergeflow-lora-policy/1"


def load_lora_bank(params: Params) -> FactorBank:
    """The suite's LoRA experts, in suite.tasks order, as one factor bank."""
    # peft (and through it transformers) is imported here: the report reads policies and needs neither.
    from mergeflow.lora.adapters import load_adapter, lora_factors, lora_state

    tasks = params.suite.tasks
    factors, scalings = [], []
    for task in tasks:
        module, _ = load_encoder(params)
        adapted, spec = load_adapter(lora_adapter_dir(task), module)
        factors.append(lora_factors(lora_state(adapted)))
        scalings.append(spec.scaling)
    return stack_factors(tasks, factors, scalings)


def load_tr_router(params: Params) -> RouterEmbedder | None:
    """TR-Merging's separate router encoder (lora.tr.router_encoder), or None to score with the base encoder."""
    return load_router_embedder(params.lora.settings("tr")["router_encoder"], params.suite.kind,
                                params.backbone.pretrained, params.suite.max_tokens)


def save_policy(method: str, tensors: dict[str, torch.Tensor], settings: dict[str, Any]) -> None:
    """Atomically write a policy: its tensors (may be empty) and its settings as JSON metadata."""
    payload = tensors or {"empty": torch.zeros(0)}
    save_tensors(lora_policy_path(method), {k: v.contiguous() for k, v in payload.items()},
                 metadata={"format": POLICY_FORMAT, "method": method, "settings": json.dumps(settings, sort_keys=True)})


def load_policy(method: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, metadata = read_safetensors(lora_policy_path(method))
    if metadata.get("format") != POLICY_FORMAT or metadata.get("method") != method:
        raise MergeflowError(f"{lora_policy_path(method)}: not the policy of {method!r}; rerun serve_lora@{method}")
    tensors.pop("empty", None)
    return tensors, json.loads(metadata["settings"])
