"""The LoRA-expert methods' names and results-table names (torch-free: params.py validates ``lora.methods`` with
them, the results table checks rows with them; lora/methods.py binds each to its calibration and policy, and its
registry must have exactly these keys)."""

from __future__ import annotations

from typing import Literal, get_args

LoraMethodName = Literal["experts", "task_arithmetic", "tr", "twin", "dawin", "mad"]
LORA_METHODS: tuple[str, ...] = get_args(LoraMethodName)
# method -> (results-table method, router)
TABLE_NAMES: dict[str, tuple[str, str]] = {
    "experts": ("finetuned", "oracle"),
    "task_arithmetic": ("task_arithmetic", "none"),
    "tr": ("tr_merging", "tr"),
    "twin": ("twin_merging", "twin"),
    "dawin": ("dawin", "dawin"),
    "mad": ("finetuned", "mad"),
}
assert tuple(TABLE_NAMES) == LORA_METHODS
