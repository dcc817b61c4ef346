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
