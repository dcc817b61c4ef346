"""The LoRA-expert part of reports/report.md: TR-Merging next to Task Arithmetic, Twin-Merging, DaWin and MAD over the
same LoRA experts, TR-Merging's validation choice of temperature and top-K, and the serving-cost table of the
task-unknown methods (TR-Merging, Twin, DaWin, MAD). Formats what serve_lora@ measured (and TR's validation grid)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from mergeflow.reporting.tables import Report, format_wide, markdown, pct, per_task

LABELS = {
    ("finetuned", "oracle"): "LoRA experts (task-known)",
    ("task_arithmetic", "none"): "Task Arithmetic (one model)",
    ("tr_merging", "tr"): "TR-Merging",
    ("twin_merging", "twin"): "Twin-Merging",
    ("dawin", "dawin"): "DaWin",
    ("finetuned", "mad"): "MAD -> one LoRA expert",
    ("wemoe", "wemoe"): "WEMoE",
    ("mow_merging", "mow"): "MoW-Merging",
}


def _keys(results: pd.DataFrame) -> list[tuple[str, str]]:
    present = set(zip(results["method"], results["router"], strict=True))
    return [key for key in LABELS if key in present]


def lora_accuracy_table(results: pd.DataFrame, tasks: Sequence[str]) -> str:
    """Accuracy per task and average, with routing accuracy (argmax coefficient = true task) for the routed rows."""
    keys = _keys(results)
    wide = per_task(results[results["metric"] == "accuracy"], tasks, ["method", "router"]).loc[keys]
    table = format_wide(wide, tasks).drop(columns=["method", "router"])
    routing = results[results["metric"] == "routing_accuracy"].groupby(["method", "router"])["value"].mean()
    table.insert(0, "method", [LABELS[key] for key in keys])
    table["routing"] = [pct(routing[key]) if key in routing.index else "-" for key in keys]
    return markdown(table)


def cost_rows(results: pd.DataFrame, label: str) -> list[dict[str, str]]:
    rows = []
    for (method, router), group in results.groupby(["method", "router"], sort=False):
        metrics = group.groupby("metric")["value"].mean()
        if "seconds_per_input" not in metrics or router in ("oracle", "none"):
            continue
        rows.append({
            "method": LABELS.get((method, router), f"{method} + {router}"),
            "experts": label,
            "ms per input": f"{1e3 * metrics['seconds_per_input']:.3f}",
            "tensor memory (MB)": f"{metrics['peak_memory_bytes'] / 1e6:.1f}",
            "avg accuracy": pct(metrics["accuracy"]),
            "routing": pct(metrics["routing_accuracy"]) if "routing_accuracy" in metrics else "-",
        })
    return rows


def tr_choice_section(choice: Mapping[str, Any]) -> list[str]:
    """The validation grid of TR-Merging's (temperature, top-K) and what was chosen."""
    grid = pd.DataFrame(choice["grid"]).pivot_table(index="top_k", columns="temperature", values="val_accuracy", sort=True)
    grid = grid.map(pct).reset_index()
    grid.columns = ["top-K \\ temperature", *[str(c) for c in grid.columns[1:]]]
    return [
        "## TR-Merging's temperature and top-K (validation accuracy)",
        f"Weights `{choice['form']}` (written: softmax(softmax(s)/tau), Eqs. 6-8; scaled: softmax(s/tau), Eq. 13), "
        f"renormalised top-K: {choice['renormalize']}; {choice['samples']} embedded samples per task; chosen on "
        f"{choice['val_samples']} validation inputs per task: **temperature {choice['temperature']}, K = {choice['top_k']}**.",
        markdown(grid),
    ]


def build_lora_report(suite: str, tasks: Sequence[str], results: pd.DataFrame, tr_choice: Mapping[str, Any] | None,
                      per_input_routers: Sequence[str] = ()) -> Report:
    """``results`` is the whole table: rows of ``<suite>-lora`` fill the LoRA tables; MAD's routed rows of ``suite``
    (full fine-tunes, mask banks) and the trained per-input methods' rows (``per_input_routers``) join the cost table."""
    lora = results[results["suite"] == f"{suite}-lora"]
    full = results[(results["suite"] == suite) & (results["router"] == "mad")]
    dynamic = results[(results["suite"] == suite) & results["router"].isin(list(per_input_routers))]
    sections = [
        f"# LoRA experts: TR-Merging and the per-input baselines (`{suite}-lora`)",
        "Every method serves the same LoRA experts (one per task, adapters in the MLP layers) without materialising "
        "weights per input: (W0 + sum_e a_e B_e A_e) x = W0 x + sum_e a_e B_e (A_e x). Inputs are scored with their "
        "dataset's frozen head, as in the static rows; what each method decides without the task label is the weights. "
        "Routing = share of inputs whose largest coefficient is their own task's expert.",
        lora_accuracy_table(lora, tasks),
        *(tr_choice_section(tr_choice) if tr_choice is not None else []),
        "## Serving cost of the task-unknown methods (MAD Table 4 shape)",
        "Seconds per input over the mixed test stream at the serving batch size (routing included) and the tensor "
        "bytes the server holds. MAD's rows serve full fine-tunes through mask banks (suite "
        f"`{suite}`), WEMoE's and MoW-Merging's the full task vectors; the others serve the LoRA experts.",
        markdown(pd.DataFrame(cost_rows(lora, "LoRA") + cost_rows(dynamic, "full (task vectors)") + cost_rows(full, "full (mask bank)"))),
    ]
    return Report("\n\n".join(sections) + "\n")
