"""The report's "Regime" part: the four regime figures against their targets (from reports/regime.json, which the
``regime`` stage writes) and the task-identity probe per task; it formats, never recomputes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from mergeflow.evaluation.regime import figures_from_record, regime_frame
from mergeflow.reporting.tables import Report, markdown, pct


def probe_table(probe: Mapping[str, Any], tasks: Sequence[str]) -> str:
    """Per task: the share of its test inputs the probe assigns to it, and where the rest went (largest first)."""
    order = list(probe["tasks"])
    rows = []
    for task in tasks:
        confusion = dict(zip(order, probe["confusion"][order.index(task)], strict=True)) if task in order else {}
        total = sum(confusion.values())
        wrong = sorted(((count, other) for other, count in confusion.items() if other != task and count), key=lambda c: (-c[0], c[1]))
        rows.append({
            "task": task,
            "probe accuracy": pct(probe["per_task"][task]) if task in probe["per_task"] else "-",
            "mistaken for": ", ".join(f"{other} {pct(count / total)}" for count, other in wrong[:3]) if total else "",
        })
    return markdown(pd.DataFrame(rows))


def build_regime_report(record: Mapping[str, Any], tasks: Sequence[str]) -> Report:
    """The regime part of reports/report.md."""
    figures = figures_from_record(record)
    verdict = "every figure meets its target" if record["all_pass"] else "not every figure meets its target"
    sections = [
        "# Regime",
        "Whether this benchmark is in the seed papers' regime (issue 13): properties of the benchmark measured on test "
        "by the `regime` stage (`reports/regime.json`), never reached by choosing a merging method's hyperparameters on "
        "test. Zero-shot, fine-tuned and Task Arithmetic are task averages from the results table (Task Arithmetic as "
        "merge@task_arithmetic built it, its scale chosen on validation); task identity is a multinomial logistic "
        "regression on the base model's features of every training input of every task (label = which task), scored "
        f"on the test split. Here **{verdict}**.",
        markdown(regime_frame(figures, record.get("kind", "vision"))),
    ]
    probe = record.get("probe")
    if probe is not None:
        sections += [
            "## Task identity from the base model's features, per task",
            f"{probe['model']}; training accuracy {pct(probe['train_accuracy'])} %, test {pct(probe['accuracy'])} %.",
            probe_table(probe, tasks),
        ]
    return Report("\n\n".join(sections) + "\n")
