"""The report's test-time adaptation part (AdaMerging, AdaRank), from the results table and reports/adaptation/.

Tables follow AdaRank's: the main comparison, Table 6 (lambda only / masks only / both), Table 7 (amount of test
data) and the cost of a step; figures are Fig. 4b (learned vs intrinsic rank per layer) and Fig. 10 (masks).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mergeflow.reporting.tables import Heatmap, Lines, Report, format_wide, markdown, pct, per_task

BASES = {"adamerging": "task_arithmetic", "adarank_ta": "task_arithmetic", "adarank_cart": "cart",
         "adarank_tsv_m": "tsv_m", "adarank_iso_cts": "iso_cts"}
DESIGN = (
    "AdaRank over TSV-M and Iso-CTS (the authors released no code for these): masks act on each task's components "
    "*after* the static method's orthogonalisation, so step 0 is the static method exactly (up to float round-off). "
    "TSV-M: task t's components are its int(r/T) polar-orthogonalised directions (kept at step 0) followed by its "
    "remaining raw SVD components (pruned at step 0, which AdaRank may switch on). Iso-CTS: task t's components are its "
    "task-specific orthogonalised directions plus a 1/T share of every common direction, all with Iso's flattened "
    "value, all kept at step 0. Details: `src/mergeflow/adaptation/components.py`."
)


def _accuracy(results: pd.DataFrame, method: str, router: str) -> pd.Series:
    rows = results[(results["method"] == method) & (results["router"] == router) & (results["metric"] == "accuracy")]
    return rows.set_index("task")["value"]


def main_table(results: pd.DataFrame, tasks: Sequence[str], methods: Sequence[str]) -> str:
    """Each adapted model next to its static base (final step, router=none; the base's task-known row)."""
    rows = []
    for method in methods:
        for name, router in ((BASES[method], "oracle"), (method, "none")):
            scores = _accuracy(results, name, router)
            if len(scores):
                rows.append({"model": name if router == "oracle" else f"{name} (adapted)", **{t: scores.get(t, np.nan) for t in tasks}})
    frame = pd.DataFrame(rows).drop_duplicates("model")
    frame["avg"] = frame[list(tasks)].mean(axis=1)
    for column in [*tasks, "avg"]:
        frame[column] = frame[column].map(pct)
    return markdown(frame)


def ablation_table(results: pd.DataFrame, variants: pd.DataFrame) -> str:
    """Table 6 shape: average accuracy with lambda only, masks only, both (both = adapt@'s model)."""
    rows = []
    for method, group in variants[variants["variant"].str.endswith("only")].groupby("method", sort=False):
        averages = group.groupby("variant", sort=False)["accuracy"].mean()
        both = _accuracy(results, method, "none").mean()
        rows.append({"method": method, "lambda only": pct(averages.get("lambda only", np.nan)),
                     "masks only": pct(averages.get("masks only", np.nan)), "both": pct(both)})
    return markdown(pd.DataFrame(rows))


def data_table(results: pd.DataFrame, variants: pd.DataFrame, tasks: Sequence[str], method: str) -> str:
    """Table 7 shape: accuracy when adapting on a fraction of the test data (100 % = adapt@'s model)."""
    rows = variants[variants["variant"].str.contains("% of test data")]
    wide = per_task(rows, tasks, ["method", "variant"], "accuracy")
    full = _accuracy(results, method, "none")
    if len(full):
        wide.loc[(method, "100% of test data"), list(tasks)] = [full[t] for t in tasks]
        wide.loc[(method, "100% of test data"), "avg"] = full.mean()
    return markdown(format_wide(wide, tasks))


def step_table(steps: pd.DataFrame, results: pd.DataFrame) -> str:
    """Median seconds per adaptation step (adapt@'s timing rows, joined onto ``results`` by the report), and each
    method's ratio to AdaMerging's; a method without a timing shows "-"."""
    timed = results[(results["metric"] == "median_seconds_per_step") & (results["router"] == "none")]
    median = steps["method"].map(timed.groupby("method")["value"].mean())
    reference = median[steps["method"] == "adamerging"].mean() if (steps["method"] == "adamerging").any() else np.nan
    return markdown(pd.DataFrame({
        "method": steps["method"],
        "ms per step": median.map(lambda v: "-" if pd.isna(v) else f"{1e3 * v:.1f}"),
        "x AdaMerging": median.map(lambda v: "-" if pd.isna(v) or pd.isna(reference) else f"{v / reference:.2f}"),
        "steps": steps["steps"],
    }))


def trajectory_table(steps: pd.DataFrame) -> str:
    """Mean validation accuracy during adaptation (logged every steps/5; no step is selected with it)."""
    trajectories = {row.method: {int(k): v for k, v in json.loads(row.validation_accuracy).items()} for row in steps.itertuples()}
    checkpoints = sorted({step for values in trajectories.values() for step in values})
    frame = pd.DataFrame([{"method": method, **{f"step {c}": pct(values[c]) if c in values else "" for c in checkpoints}}
                          for method, values in trajectories.items()])
    return markdown(frame)


def rank_figure(ranks: pd.DataFrame, method: str) -> tuple[Lines, str]:
    """Fig. 4b shape: per layer (SVD key), kept rank and the 95 %-energy rank, averaged over tasks."""
    rows = ranks[ranks["method"] == method]
    per_key = rows.groupby("key", sort=False)[["kept", "intrinsic_95", "full"]].mean()
    labels = [key.replace("visual.", "").replace("transformer.resblocks.", "b").replace(".weight", "") for key in per_key.index]
    figure = Lines(f"ranks_{method}", labels, {"kept after adaptation": per_key["kept"].tolist(),
                                                  "95% spectral energy": per_key["intrinsic_95"].tolist(),
                                                  "full rank": per_key["full"].tolist()},
                   f"{method}: rank per layer (mean over tasks)", "components")
    summary = (f"Averaged over layers and tasks, {method} keeps {per_key['kept'].mean():.1f} of {per_key['full'].mean():.1f} "
               f"components; 95 % of the spectral energy sits in the top {per_key['intrinsic_95'].mean():.1f}.")
    return figure, summary


def mask_figures(masks: pd.DataFrame, tasks: Sequence[str], method: str) -> list[Heatmap]:
    """Fig. 10 shape: the final masks (task x component) of the first, middle and last block's attention input."""
    rows = masks[(masks["method"] == method) & masks["key"].str.endswith("attn.in_proj_weight")]
    figures = []
    for key, group in rows.groupby("key", sort=False):
        grid = group.pivot_table(index="task", columns="component", values="kept", aggfunc="first").reindex(list(tasks))
        block = key.split(".resblocks.")[1].split(".")[0]
        figures.append(Heatmap(f"masks_{method}_block{block}", grid.to_numpy(dtype=float), list(tasks),
                               [str(c) for c in grid.columns], f"{method}: kept components, block {block} attn.in_proj",
                               "kept (1) / pruned (0)", number_format=None, row_label="task", column_label="component"))
    return figures


NOT_RUN = ("Not run by default (each variant is one more full adaptation); `profiles/full-analysis.yaml` runs it: "
           "`./scripts/run_suite.sh profiles/full-analysis.yaml`.")


def _variant_sections(results: pd.DataFrame, variants: pd.DataFrame, tasks: Sequence[str], data_method: str) -> list[str]:
    """The Table 6 / Table 7 sections, or a line saying which profile runs them when params.yaml lists no variant."""
    ablation = variants["variant"].str.endswith("only")  # analyze_adaptation writes the columns even with no rows
    fractions = variants["variant"].str.contains("% of test data")
    return [
        "## Ablation: what is learned (Table 6 shape)",
        "AdaRank learning layer-wise coefficients only, component masks only, or both (average accuracy):",
        ablation_table(results, variants) if ablation.any() else NOT_RUN,
        "## Amount of test data (Table 7 shape)",
        data_table(results, variants, tasks, data_method) if fractions.any() else NOT_RUN,
    ]


def build_adaptation_report(
    tasks: Sequence[str], methods: Sequence[str], data_method: str, results: pd.DataFrame, analysis: Mapping[str, pd.DataFrame],
    settings: Mapping[str, object],
) -> Report:
    """The adaptation part of reports/report.md."""
    ranks_method = "adarank_ta" if "adarank_ta" in methods else next((m for m in methods if m != "adamerging"), None)
    figures: list[Heatmap | Lines] = []
    sections = [
        "# Test-time adaptation: AdaMerging and AdaRank",
        f"Entropy minimisation on unlabelled test batches ({settings['batch_size']} inputs per task per step, "
        f"{settings['steps']} Adam steps at lr {settings['lr']}); the **final step** is reported, no step is selected. "
        "Adapted models are static (one model for every input, `router=none`), scored with each task's head.",
        "## Adapted vs static (AdaRank Table 1 shape)",
        "Static rows are the merge@ models with their params.yaml settings; each adaptation starts from its own step-0 "
        "model (its settings in params.yaml `adapt:`), whose validation accuracy is the first column of the trajectory "
        "table below.",
        main_table(results, tasks, methods),
        *_variant_sections(results, analysis["variants"], tasks, data_method),
        "## Validation accuracy along the way",
        "Logged every steps/5 steps to show whether lower entropy means higher accuracy here; the reported model is "
        "always the final step's.",
        trajectory_table(analysis["steps"]),
        "## Cost of an adaptation step",
        step_table(analysis["steps"], results),
    ]
    if ranks_method is not None and not analysis["ranks"].empty:
        figure, summary = rank_figure(analysis["ranks"], ranks_method)
        figures.append(figure)
        sections += ["## Learned rank vs intrinsic rank (Fig. 4b shape)", summary, f"![ranks](figures/{figure.name}.png)"]
        heatmaps = mask_figures(analysis["masks"], tasks, ranks_method)
        figures += heatmaps
        sections += ["## Final masks, first / middle / last block (Fig. 10 shape)"]
        sections += [f"![masks](figures/{heatmap.name}.png)" for heatmap in heatmaps]
    sections += ["## Design of AdaRank over TSV-M and Iso-CTS", DESIGN]
    return Report("\n\n".join(sections) + "\n", figures)
