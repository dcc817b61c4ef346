"""Where stage artifacts live: the same paths dvc.yaml declares (tests/test_dvc_graph.py checks they agree).

Kept free of heavy imports so light stages (prepare, task_vectors, results) start fast.
"""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path("artifacts")
REPORTS = Path("reports")
BASE_MODEL = ARTIFACTS / "base" / "clip.safetensors"
HEADS = ARTIFACTS / "heads"
EXPERTS = ARTIFACTS / "experts"
TASK_VECTORS = ARTIFACTS / "task_vectors"
RESULT_PARTS = REPORTS / "parts"
MERGED = ARTIFACTS / "merged"


def split_path(task: str, split: str) -> Path:
    return ARTIFACTS / "data" / task / f"{split}.parquet"


def tokens_path(task: str, split: str) -> Path:
    """A text split's token ids and labels (text suites only; the Parquet beside it keeps the sentences)."""
    return ARTIFACTS / "data" / task / f"{split}.tokens.safetensors"


def head_path(task: str) -> Path:
    return HEADS / f"{task}.safetensors"


def expert_path(task: str) -> Path:
    return EXPERTS / f"{task}.safetensors"


def task_vector_path(task: str) -> Path:
    return TASK_VECTORS / f"{task}.safetensors"


def merged_path(method: str) -> Path:
    return MERGED / f"{method}.safetensors"


def merged_part_path(method: str) -> Path:
    return RESULT_PARTS / "merged" / f"{method}.parquet"


FEATURES = ARTIFACTS / "features"
ROUTERS = ARTIFACTS / "routers"
PREDICTIONS = ARTIFACTS / "predictions"
ROUTING_ANALYSIS = REPORTS / "routing"
REPORT = REPORTS / "report.md"
FIGURES = REPORTS / "figures"


def features_path(model: str) -> Path:
    return FEATURES / f"{model}.safetensors"


def router_path(router: str) -> Path:
    return ROUTERS / f"{router}.safetensors"


def predictions_path(method: str) -> Path:
    """Per-input predictions of a task-unknown evaluation of a mask bank (evaluate_routed@), for the analyses."""
    return PREDICTIONS / f"{method}.parquet"


def static_predictions_path(method: str) -> Path:
    """Per-input predictions of a single model served to every input (evaluate_static), for the analyses."""
    return PREDICTIONS / "static" / f"{method}.parquet"


def routed_part_path(method: str) -> Path:
    return RESULT_PARTS / "routed" / f"{method}.parquet"


def static_part_path(method: str) -> Path:
    return RESULT_PARTS / "static" / f"{method}.parquet"


ADAPT = ARTIFACTS / "adapt"
ADAPTATION_ANALYSIS = REPORTS / "adaptation"


def adapt_record_path(method: str) -> Path:
    """What adapt@METHOD learned: final masks, coefficients, per-step loss and time."""
    return ADAPT / f"{method}.safetensors"


LORA = ARTIFACTS / "lora"


def lora_adapter_dir(task: str) -> Path:
    """A LoRA expert in peft's format (adapter_config.json + adapter_model.safetensors)."""
    return LORA / "experts" / task


def lora_policy_path(method: str) -> Path:
    """What serve_lora@METHOD fits to serve METHOD: router tensors (if any) and its chosen settings."""
    return LORA / "policies" / f"{method}.safetensors"


def lora_part_path(method: str) -> Path:
    return RESULT_PARTS / "lora" / f"{method}.parquet"


DYNAMIC = ARTIFACTS / "dynamic"


def dynamic_path(method: str) -> Path:
    """What a trained per-input method (serve_dynamic@) learned: WEMoE's routers, MoW-Merging's gate."""
    return DYNAMIC / f"{method}.safetensors"


def dynamic_part_path(method: str) -> Path:
    return RESULT_PARTS / "dynamic" / f"{method}.parquet"


BASE_FEATURES = ARTIFACTS / "regime" / "base_features.safetensors"  # the base model's train/test features (regime probe)
REGIME = REPORTS / "regime.json"  # the benchmark's regime figures against their targets


TIMINGS = REPORTS / "timings"


def timing_path(stage: str) -> Path:
    """A stage's wall-clock timings (``stage`` as DVC names it, e.g. ``adapt@adamerging``): an uncached metric, kept out
    of every cached output so their hashes repeat across runs (mergeflow/evaluation/timings.py)."""
    return TIMINGS / f"{stage}.json"
