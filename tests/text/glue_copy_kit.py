"""Local copies of GLUE tasks in the hub dataset's own format, written by ``save_to_disk`` (what a user with network
gets from ``load_dataset("nyu-mll/glue", "sst2").save_to_disk(...)``): GLUE's columns (``sentence`` or a named pair,
a ``label`` ``ClassLabel`` with GLUE's names, an ``idx``), GLUE's three splits, and GLUE's unlabelled test split
(every label -1). The sentences are those of the offline glue7 task that mimics each (the same class order).
"""

from __future__ import annotations

from pathlib import Path

from mergeflow.data.sources.glue import glue_task
from mergeflow.data.text_suites import text_suite_tasks

MIMICS = {"sst2": "sst2_like", "mrpc": "mrpc_like"}  # GLUE task -> the glue7 task whose sentences fill it
SIZES = {"train": 200, "validation": 40, "test": 24}


def write_glue_copy(root: Path, task: str, sizes: dict[str, int] = SIZES) -> None:
    """``root`` = a DatasetDict of GLUE task ``task`` saved to disk."""
    import datasets

    datasets.disable_progress_bars()
    glue, spec = glue_task(task), text_suite_tasks("glue7")[MIMICS[task]]
    columns = {name: datasets.Value("string") for name in glue.text_columns}
    features = datasets.Features({**columns, "label": datasets.ClassLabel(names=list(glue.class_names)),
                                  "idx": datasets.Value("int32")})
    splits = {}
    for split, count in sizes.items():
        rows, labels, _ = spec.make_split("train" if split == "train" else "test", count, seed=len(split))
        data: dict[str, list] = {name: [] for name in glue.text_columns}
        for row in rows:
            texts = (row,) if isinstance(row, str) else row
            for name, text in zip(glue.text_columns, texts, strict=True):
                data[name].append(text)
        data["label"] = [-1] * count if split == "test" else [int(label) for label in labels]
        data["idx"] = list(range(count))
        splits[split] = datasets.Dataset.from_dict(data, features=features)
    datasets.DatasetDict(splits).save_to_disk(str(root))


def build_glue_copies(project: Path) -> None:
    for task in MIMICS:
        write_glue_copy(project / "real_data" / "glue" / task, task)
