"""Real text suites in params.yaml: GLUE tasks by name (nyu-mll/glue's configs), a published task read from a local
copy, text references of one's own, and the checks that keep a suite all text or all images; the rows prepare reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from mergeflow.data.real_suite import PUBLISHED_TASKS, real_suite_kind, real_tasks
from mergeflow.data.real_texts import read_text_rows
from mergeflow.data.sources.examples import SourceSplit
from mergeflow.data.sources.glue import GLUE_REAL_TASKS
from mergeflow.data.sources.tasks_tall import TALL_TASKS
from mergeflow.errors import MergeflowError
from mergeflow.params import parse_params
from mergeflow.profiles import resolve_profile

ROOT = Path(__file__).resolve().parents[2]


def _tiny_glue() -> dict:
    return resolve_profile(ROOT / "profiles" / "tiny_glue.yaml")


def test_glue_names_give_the_hub_configs_columns_and_test_splits() -> None:
    tasks = real_tasks(["a", "b", "c"], {"a": "sst2", "b": "mnli", "c": "qqp"})
    assert real_suite_kind(tasks) == "text"
    sst2, mnli, qqp = tasks["a"].reference, tasks["b"].reference, tasks["c"].reference
    assert (sst2.kind, sst2.id, sst2.config, sst2.text_columns) == ("huggingface", "nyu-mll/glue", "sst2", ("sentence",))
    assert sst2.test_split == "validation" and sst2.validation_split is None  # validation is carved from train
    assert mnli.test_split == "validation_matched" and mnli.text_columns == ("premise", "hypothesis")
    assert qqp.text_columns == ("question1", "question2") and tasks["c"].class_names == ("not_duplicate", "duplicate")
    assert tasks["b"].num_classes == 3 and tasks["a"].templates == () and tasks["a"].templates_origin == "none"
    assert not set(TALL_TASKS) & set(GLUE_REAL_TASKS) and len(PUBLISHED_TASKS) == 27


def test_a_local_copy_keeps_the_published_columns_and_changes_only_the_location() -> None:
    task = real_tasks(["pairs"], {"pairs": {"task": "mrpc", "kind": "disk", "path": "copies/mrpc"}})["pairs"]
    ref = task.reference
    assert (ref.kind, ref.path, ref.id, ref.config) == ("disk", "copies/mrpc", None, None)
    assert ref.text_columns == ("sentence1", "sentence2") and ref.test_split == "validation"
    assert task.name == "pairs" and task.class_names == ("not_equivalent", "equivalent")
    vision = real_tasks(["digits"], {"digits": {"task": "mnist", "kind": "disk", "path": "copies/mnist"}})["digits"]
    assert vision.reference.image_column == "image" and vision.templates == TALL_TASKS["mnist"].templates


@pytest.mark.parametrize(("datasets", "message"), [
    ({"a": "sst2", "b": "mnist"}, "a suite is all images or all text, but ['a'] are text tasks and ['b'] image tasks"),
    ({"a": {"task": "sst2", "kind": "disk", "path": "x", "text_columns": ["s"]}, "b": "rte"},
     "suite.datasets.a: with `task` only the location keys"),
    ({"a": {"task": "sst2", "path": "x"}, "b": "rte"}, "suite.datasets.a: a local copy of a published task needs `kind`"),
    ({"a": {"task": "sst3", "kind": "disk", "path": "x"}, "b": "rte"}, "suite.datasets.a: unknown published task 'sst3'"),
    ({"a": {"kind": "disk", "path": "x", "text_columns": ["s"], "templates": ["a {}."]}, "b": "rte"},
     "suite.datasets.a: `templates` apply to image tasks"),
    ({"a": {"kind": "disk", "path": "x", "text_columns": ["p", "q", "r"]}, "b": "rte"},
     "suite.datasets.a: `text_columns`: one sentence or a pair, got 3 columns"),
])
def test_a_wrong_real_text_suite_is_one_error_naming_the_key(datasets: dict, message: str) -> None:
    with pytest.raises(MergeflowError) as caught:
        real_tasks(["a", "b"], datasets)
    assert message in str(caught.value)


def test_the_tiny_glue_profile_is_a_text_suite_that_needs_max_tokens_and_no_image_size() -> None:
    params = parse_params(_tiny_glue())
    assert params.suite.kind == "text" and params.suite.max_tokens == 48
    for key, value, message in (("max_tokens", None, "suite.max_tokens: required for a real text suite"),
                                ("image_size", 32, "suite.image_size: does not apply to a real text suite")):
        raw = _tiny_glue()
        raw["suite"][key] = value
        with pytest.raises(MergeflowError, match=message):
            parse_params(raw)


def _split(rows: list[tuple[str, ...]]) -> SourceSplit:
    return SourceSplit("test[train]", ("no", "yes"), len(rows), lambda i: (rows[i], i % 2))


def test_text_rows_are_read_as_sentences_or_pairs() -> None:
    single = read_text_rows(_split([("a b",), ("c",)]), "read")
    assert (single.firsts, single.seconds, single.labels) == (["a b", "c"], None, [0, 1])
    pairs = read_text_rows(_split([("a", "b"), ("c", "d"), ("e", "f")]).select([2, 0]), "read")
    assert (pairs.firsts, pairs.seconds, pairs.labels) == (["e", "a"], ["f", "b"], [0, 0])
    with pytest.raises(MergeflowError, match="row 1 has 1 text columns, earlier rows 2"):
        read_text_rows(_split([("a", "b"), ("c",)]), "read")
    with pytest.raises(MergeflowError, match="no rows to prepare"):
        read_text_rows(_split([]), "read")
