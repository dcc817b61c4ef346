"""The LoRA-expert methods' names (torch-free: params.py validates ``lora.methods`` with them; the methods themselves
are declared in lora/methods.py, whose registry must have exactly these keys)."""

from __future__ import annotations

from typing import Literal, get_args

LoraMethodName = Literal["experts", "task_arithmetic", "tr", "twin", "dawin", "mad"]
LORA_METHODS: tuple[str, ...] = get_args(LoraMethodName)
