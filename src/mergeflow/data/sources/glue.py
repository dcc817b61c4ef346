"""The seven GLUE tasks of the merging papers (cola, sst2, mrpc, qqp, mnli, qnli, rte), as data.

Facts from the GLUE dataset card on the Hugging Face hub (``nyu-mll/glue``, also reachable by its old alias ``glue``;
one config per task) and from lm-evaluation-harness's GLUE prompts (``multiple_choice``: the label word with the
highest log-likelihood after the prompt wins). GLUE's test labels are hidden, so the papers test on GLUE's validation
split (``validation_matched`` for MNLI) and carve their own validation split out of train: 10 %, at most 5,000 rows,
seed 0, as ``torch.utils.data.random_split`` draws it (``validation_indices``: the rule of every real task). As a
real text task of a suite (``GLUE_REAL_TASKS``), each is config ``<task>`` of the hub dataset with its text columns;
class names come from the dataset's ClassLabel and are checked against this table's count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mergeflow.data.sources.real_task import RealTask
from mergeflow.data.sources.reference import DatasetRef
from mergeflow.data.sources.validation import MAX_VALIDATION, VALIDATION_FRACTION, VALIDATION_SEED, carve_validation
from mergeflow.errors import MergeflowError

GLUE_DATASET = "nyu-mll/glue"
GLUE_ALIAS = "glue"  # the pre-namespace hub name; it resolves to the same dataset


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: where its rows are, what the columns mean, and how a causal LM is asked about a row.

    ``label_words[i]`` is the word scored for class ``i`` (``class_names[i]`` is the dataset's own name for it), after
    ``prompt`` filled with the row's text columns. The prompt ends without a space and every label word is scored
    with one leading space (``" positive"``), the convention lm-evaluation-harness uses (``label_words.py``).
    ``period_columns`` are stripped and given a final period before they enter the prompt (MNLI's hypothesis, so that
    "... True, False or Neither?" reads as a sentence).
    """

    name: str
    config: str
    text_columns: tuple[str, ...]
    class_names: tuple[str, ...]
    label_words: tuple[str, ...]
    prompt: str
    train_size: int
    test_size: int
    test_split: str = "validation"
    label_column: str = "label"
    period_columns: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def dataset(self) -> str:
        return GLUE_DATASET

    def render(self, row: Mapping[str, Any]) -> str:
        """The prompt for one dataset row (a mapping with at least the text columns)."""
        missing = [column for column in self.text_columns if column not in row]
        if missing:
            raise MergeflowError(f"GLUE {self.name}: a row lacks the text column(s) {missing}; it has {sorted(row)}")
        values = {column: str(row[column]) for column in self.text_columns}
        for column in self.period_columns:
            text = values[column].strip()
            values[column] = text if text.endswith(".") else text + "."
        return self.prompt.format(**values)

    def render_texts(self, texts: Sequence[str]) -> str:
        """The prompt for one row given as its text columns' values, in ``text_columns`` order."""
        if len(texts) != len(self.text_columns):
            raise MergeflowError(f"GLUE {self.name}: {len(texts)} texts for the columns {list(self.text_columns)}")
        return self.render(dict(zip(self.text_columns, texts, strict=True)))


def _task(name: str, columns: tuple[str, ...], classes: tuple[str, ...], words: tuple[str, ...], prompt: str,
          train: int, test: int, **extra: Any) -> GlueTask:
    if len(classes) != len(words):
        raise AssertionError(f"{name}: one label word per class")
    return GlueTask(name, name, columns, classes, words, prompt, train, test, **extra)


GLUE_TASKS: dict[str, GlueTask] = {task.name: task for task in (
    _task("cola", ("sentence",), ("unacceptable", "acceptable"), ("no", "yes"),
          "{sentence}\nQuestion: Does this sentence make sense?\nAnswer:", 8_551, 1_043),
    _task("sst2", ("sentence",), ("negative", "positive"), ("negative", "positive"),
          "{sentence}\nQuestion: Is this sentence positive or negative?\nAnswer:", 67_349, 872),
    _task("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("no", "yes"),
          "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nQuestion: Do both sentences mean the same thing?\nAnswer:",
          3_668, 408),
    _task("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), ("no", "yes"),
          "Question 1: {question1}\nQuestion 2: {question2}\nQuestion: Do both questions ask the same thing?\nAnswer:",
          363_846, 40_430),
    _task("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("True", "Neither", "False"),
          "{premise}\nQuestion: {hypothesis} True, False or Neither?\nAnswer:", 392_702, 9_815,
          test_split="validation_matched", period_columns=("hypothesis",)),
    _task("qnli", ("question", "sentence"), ("entailment", "not_entailment"), ("yes", "no"),
          "{question}\n{sentence}\nQuestion: Does this response answer the question?\nAnswer:", 104_743, 5_463),
    _task("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), ("True", "False"),
          "{sentence1}\nQuestion: {sentence2} True or False?\nAnswer:", 2_490, 277),
)}


def glue_task(name: str) -> GlueTask:
    """The task by its GLUE config name, with the known names in the error."""
    try:
        return GLUE_TASKS[name]
    except KeyError:
        raise MergeflowError(f"unknown GLUE task {name!r}; known: {', '.join(GLUE_TASKS)}") from None


def glue_task_of(definition: RealTask) -> GlueTask | None:
    """The GLUE task a suite's task definition is (by name, text columns and classes: a published task or a local
    copy of one), or None: what says whether its prompt and label words apply."""
    glue = GLUE_TASKS.get(definition.paper_name)
    if glue is None or definition.reference.text_columns != glue.text_columns or definition.class_names != glue.class_names:
        return None
    return glue


def validation_size(train_size: int) -> int:
    """10 % of train, at most 5,000 rows (int() rounds down, as the papers' split code does)."""
    return min(int(train_size * VALIDATION_FRACTION), MAX_VALIDATION)


def validation_indices(train_size: int, seed: int = VALIDATION_SEED) -> tuple[list[int], list[int]]:
    """(train rows kept, validation rows): ``random_split(train, [n - v, v], Generator().manual_seed(seed))``'s indices,
    drawn from the row count alone (``validation.carve_validation``, the rule every real task's split follows)."""
    if train_size < 1:
        raise MergeflowError(f"a train split needs at least one row, got {train_size}")
    return carve_validation(range(train_size), seed=seed)


def _real(task: GlueTask) -> RealTask:
    """The task as a real text task of a suite (``suite.datasets``: its name): the hub config, no prompt templates."""
    reference = DatasetRef(kind="huggingface", id=GLUE_DATASET, config=task.config, text_columns=task.text_columns,
                           label_column=task.label_column, test_split=task.test_split)
    return RealTask(task.name, task.name, reference, (), "none", task.class_names, task.num_classes)


GLUE_REAL_TASKS: dict[str, RealTask] = {name: _real(task) for name, task in GLUE_TASKS.items()}
