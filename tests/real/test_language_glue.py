"""The seven GLUE tasks as data: the dataset's configs, columns and label order, lm-eval-harness-style prompts with one
label word per class, GLUE validation as the test split, and the papers' 10 % / 5,000 / seed-0 validation split."""

from __future__ import annotations

import pytest
import torch

from mergeflow.data.sources.glue import GLUE_ALIAS, GLUE_DATASET, GLUE_TASKS, glue_task, validation_indices, validation_size
from mergeflow.errors import MergeflowError


def test_the_seven_tasks_with_their_columns_classes_and_splits() -> None:
    assert list(GLUE_TASKS) == ["cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte"]
    assert (GLUE_DATASET, GLUE_ALIAS) == ("nyu-mll/glue", "glue")
    assert {name: task.text_columns for name, task in GLUE_TASKS.items()} == {
        "cola": ("sentence",), "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"), "qqp": ("question1", "question2"),
        "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2")}
    assert {name: task.num_classes for name, task in GLUE_TASKS.items()} == {
        "cola": 2, "sst2": 2, "mrpc": 2, "qqp": 2, "mnli": 3, "qnli": 2, "rte": 2}
    assert {name for name, task in GLUE_TASKS.items() if task.test_split != "validation"} == {"mnli"}
    assert GLUE_TASKS["mnli"].test_split == "validation_matched"
    for name, task in GLUE_TASKS.items():
        assert task.config == name and task.dataset == GLUE_DATASET and task.label_column == "label"
        assert len(task.label_words) == task.num_classes == len(set(task.label_words))
        assert task.prompt.endswith("Answer:"), "label words are scored after 'Answer:' with one leading space"


def test_label_words_follow_the_datasets_label_order() -> None:
    words = {name: dict(zip(task.class_names, task.label_words, strict=True)) for name, task in GLUE_TASKS.items()}
    assert words["sst2"] == {"negative": "negative", "positive": "positive"}
    assert words["mnli"] == {"entailment": "True", "neutral": "Neither", "contradiction": "False"}
    assert words["rte"] == {"entailment": "True", "not_entailment": "False"}
    assert words["qnli"] == {"entailment": "yes", "not_entailment": "no"}
    assert words["cola"] == {"unacceptable": "no", "acceptable": "yes"}
    assert words["mrpc"]["equivalent"] == "yes" and words["qqp"]["duplicate"] == "yes"


def test_prompts_render_rows() -> None:
    assert glue_task("sst2").render({"sentence": "a fine film", "label": 1, "idx": 0}) == (
        "a fine film\nQuestion: Is this sentence positive or negative?\nAnswer:")
    mnli = glue_task("mnli")
    assert mnli.render({"premise": "It rained.", "hypothesis": " The street is wet "}) == (
        "It rained.\nQuestion: The street is wet. True, False or Neither?\nAnswer:")
    assert "is wet." in mnli.render({"premise": "p", "hypothesis": "The street is wet."})  # no second period
    assert glue_task("rte").render({"sentence1": "A b.", "sentence2": "C d."}) == "A b.\nQuestion: C d. True or False?\nAnswer:"
    with pytest.raises(MergeflowError, match=r"lacks the text column\(s\) \['sentence2'\]"):
        glue_task("mrpc").render({"sentence1": "only one"})
    with pytest.raises(MergeflowError, match="unknown GLUE task 'stsb'"):
        glue_task("stsb")


def test_validation_is_ten_percent_of_train_at_most_5000_as_random_split_draws_it() -> None:
    assert validation_size(GLUE_TASKS["rte"].train_size) == 249
    assert validation_size(GLUE_TASKS["mrpc"].train_size) == 366
    assert validation_size(GLUE_TASKS["sst2"].train_size) == 5_000 == validation_size(GLUE_TASKS["mnli"].train_size)
    train, validation = validation_indices(2_490)
    assert len(validation) == 249 and sorted(train + validation) == list(range(2_490))
    kept, held = torch.utils.data.random_split(range(2_490), [2_241, 249], generator=torch.Generator().manual_seed(0))
    assert train == list(kept.indices) and validation == list(held.indices)
    assert validation_indices(2_490) == (train, validation) and validation_indices(2_490, seed=1)[1] != validation
    with pytest.raises(MergeflowError, match="at least one row"):
        validation_indices(0)
