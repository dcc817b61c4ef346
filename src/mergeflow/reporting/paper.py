"""The report's "Paper vs this benchmark" part: the seed papers' CLIP ViT-B/32 8-task figures (quoted constants,
each with its source) next to ours from the results table, and the papers' orderings checked on our numbers.

Orderings are computed from the results table on every run, never written down: a chain ``a ≥ b ≈ c > d/e`` is
checked link by link between neighbours; a tier ``d/e`` means every member, so ``c > d/e`` holds when c beats the
best of d and e, and ``d/e > f`` when the worst of d and e beats f.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from mergeflow.evaluation.regime import task_average
from mergeflow.reporting.tables import Report, markdown

APPROX_POINTS = 1.0   # a ≈ b: within this many percentage points of each other

MAD = "MAD (Training-free task classification for multi-task model merging, ICLR 2026 submission; shared/seeds/000_*)"
ADARANK = "AdaRank (Lee et al., arXiv:2503.22178; shared/seeds/003_*)"
TR = "TR-Merging (Training-free router for model merging, shared/seeds/004_*)"
SOURCES = {"MAD": MAD, "AdaRank": ADARANK, "TR-Merging": TR}


@dataclass(frozen=True)
class Item:
    """A number of ours: the task average of one (method, router, metric); method None = any method with that
    router (routing accuracy does not depend on the mask bank served after routing)."""

    label: str
    method: str | None
    router: str
    metric: str = "accuracy"
    suite_suffix: str = ""  # "-lora": the LoRA-expert rows (suite "<suite>-lora")


@dataclass(frozen=True)
class PaperFigure:
    item: Item
    value: float        # percent, as printed in the paper
    source: str         # key of SOURCES
    where: str          # table in that paper


ZERO_SHOT = Item("zero-shot (pretrained)", "pretrained", "oracle")
FINETUNED = Item("fine-tuned", "finetuned", "oracle")
WEIGHT_AVERAGING = Item("weight averaging", "weight_averaging", "oracle")
TASK_ARITHMETIC = Item("Task Arithmetic", "task_arithmetic", "oracle")
TIES = Item("TIES", "ties", "oracle")
CONSENSUS = Item("Consensus TA", "consensus_ta", "oracle")
TSV_M = Item("TSV-M", "tsv_m", "oracle")
CART = Item("CART", "cart", "oracle")
ISO = Item("Iso-CTS", "iso_cts", "oracle")
TALL_KNOWN = Item("TALL task-known", "tall_ta", "oracle")
TALL_MAD = Item("TALL + MAD", "tall_ta", "mad")
TALL_TIES_MAD = Item("TALL-TIES + MAD", "tall_ties", "mad")
EMR_MAD = Item("EMR + MAD", "emr", "mad")
TA_ADAMERGING = Item("TA + AdaMerging", "adamerging", "none")
TA_ADARANK = Item("TA + AdaRank", "adarank_ta", "none")
CART_ADARANK = Item("CART + AdaRank", "adarank_cart", "none")
TSV_ADARANK = Item("TSV-M + AdaRank", "adarank_tsv_m", "none")
ISO_ADARANK = Item("Iso-CTS + AdaRank", "adarank_iso_cts", "none")
WEMOE = Item("WEMoE", "wemoe", "wemoe")
MOW = Item("MoW-Merging", "mow_merging", "mow")
ROUTE_MAD = Item("routing: MAD", None, "mad", "routing_accuracy")
ROUTE_EUCLIDEAN = Item("routing: Euclidean", None, "euclidean", "routing_accuracy")
ROUTE_COSINE = Item("routing: cosine", None, "cosine", "routing_accuracy")
ROUTE_DIAGONAL = Item("routing: diagonal covariance", None, "diagonal", "routing_accuracy")
ROUTE_KNN = {k: Item(f"routing: k-NN (k={k})", None, f"knn{k}", "routing_accuracy") for k in (1, 3, 5, 10)}

PAPER: tuple[PaperFigure, ...] = (
    PaperFigure(ZERO_SHOT, 48.0, "AdaRank", "Table 1"),
    PaperFigure(FINETUNED, 90.5, "AdaRank", "Table 1 (MAD's Table 2, other checkpoints: 92.8)"),
    PaperFigure(WEIGHT_AVERAGING, 65.9, "AdaRank", "Table 1"),
    PaperFigure(TASK_ARITHMETIC, 69.2, "AdaRank", "Table 1"),
    PaperFigure(TIES, 72.4, "AdaRank", "Table 1"),
    PaperFigure(CONSENSUS, 75.2, "AdaRank", "Table 1 (Consensus Merging)"),
    PaperFigure(TSV_M, 83.8, "AdaRank", "Table 1"),
    PaperFigure(CART, 84.7, "AdaRank", "Table 1"),
    PaperFigure(ISO, 84.9, "AdaRank", "Table 1"),
    PaperFigure(TALL_KNOWN, 90.8, "AdaRank", "Table 9 (TALL-Masks, task index required)"),
    PaperFigure(TALL_MAD, 92.0, "MAD", "Table 2 (TM-TA + MAD)"),
    PaperFigure(TALL_TIES_MAD, 91.9, "MAD", "Table 2 (TM-TIES + MAD)"),
    PaperFigure(EMR_MAD, 90.4, "MAD", "Table 2"),
    PaperFigure(TA_ADAMERGING, 80.1, "AdaRank", "Table 1"),
    PaperFigure(TA_ADARANK, 87.9, "AdaRank", "Table 1"),
    PaperFigure(CART_ADARANK, 89.2, "AdaRank", "Table 1"),
    PaperFigure(TSV_ADARANK, 88.9, "AdaRank", "Table 1"),
    PaperFigure(ISO_ADARANK, 89.4, "AdaRank", "Table 1"),
    PaperFigure(WEMOE, 90.4, "MAD", "Table 2 (input-dependent baselines)"),
    PaperFigure(MOW, 88.1, "MAD", "Table 2 (AdaMerging++ w/ MoW-Merging)"),
    PaperFigure(ROUTE_MAD, 98.0, "MAD", "Table 7"),
    PaperFigure(ROUTE_EUCLIDEAN, 96.7, "MAD", "Table 7"),
    PaperFigure(ROUTE_COSINE, 96.5, "MAD", "Table 7"),
    PaperFigure(ROUTE_DIAGONAL, 85.5, "MAD", "Table 7"),
    *(PaperFigure(ROUTE_KNN[k], v, "MAD", "Table F3") for k, v in ((1, 93.7), (3, 92.5), (5, 91.7), (10, 89.4))),
)

# Text suites: the language papers' settings (RoBERTa-base on 7 GLUE tasks, AdaRank; Qwen2.5-0.5B-Instruct LoRA on
# 5 GLUE tasks, TR-Merging; T5-large on 7 NLP tasks, MAD), each quoted as its paper prints it.
LORA_TA = Item("LoRA: Task Arithmetic", "task_arithmetic", "none", suite_suffix="-lora")
LORA_TWIN = Item("LoRA: Twin-Merging", "twin_merging", "twin", suite_suffix="-lora")
LORA_TR = Item("LoRA: TR-Merging", "tr_merging", "tr", suite_suffix="-lora")
LORA_FINETUNED = Item("LoRA: fine-tuned experts", "finetuned", "oracle", suite_suffix="-lora")
PAPER_TEXT: tuple[PaperFigure, ...] = (
    PaperFigure(FINETUNED, 84.8, "AdaRank", "Table 2, RoBERTa (individual)"),
    PaperFigure(TASK_ARITHMETIC, 67.2, "AdaRank", "Table 2, RoBERTa"),
    PaperFigure(TIES, 64.4, "AdaRank", "Table 2, RoBERTa"),
    PaperFigure(TSV_M, 66.9, "AdaRank", "Table 2, RoBERTa"),
    PaperFigure(CART, 70.0, "AdaRank", "Table 2, RoBERTa"),
    PaperFigure(TA_ADAMERGING, 67.6, "AdaRank", "Table 2, RoBERTa"),
    PaperFigure(TA_ADARANK, 70.3, "AdaRank", "Table 2, RoBERTa"),
    PaperFigure(TSV_ADARANK, 73.1, "AdaRank", "Table 2, RoBERTa"),
    PaperFigure(CART_ADARANK, 75.5, "AdaRank", "Table 2, RoBERTa"),
    PaperFigure(WEIGHT_AVERAGING, 59.6, "MAD", "Table 3, T5-large"),
    PaperFigure(TALL_MAD, 84.7, "MAD", "Table 3, T5-large (TM-TA + MAD; fine-tuned 88.8)"),
    PaperFigure(TALL_TIES_MAD, 85.2, "MAD", "Table 3, T5-large (TM-TIES + MAD)"),
    PaperFigure(EMR_MAD, 87.5, "MAD", "Table 3, T5-large"),
    PaperFigure(LORA_FINETUNED, 79.1, "TR-Merging", "Table 1, Qwen2.5-0.5B (multi-task; experts 77.3-85.3 on their tasks)"),
    PaperFigure(LORA_TA, 66.4, "TR-Merging", "Table 1, Qwen2.5-0.5B LoRA, 5 GLUE tasks"),
    PaperFigure(LORA_TWIN, 82.4, "TR-Merging", "Table 1, Qwen2.5-0.5B LoRA, 5 GLUE tasks"),
    PaperFigure(LORA_TR, 83.0, "TR-Merging", "Table 1, Qwen2.5-0.5B LoRA, 5 GLUE tasks"),
)

Tier = tuple[Item, ...]

# (name, tiers, relations between neighbouring tiers): the papers' orderings (issue 13).
ORDERINGS: tuple[tuple[str, tuple[Tier, ...], tuple[str, ...]], ...] = (
    ("accuracy: fine-tuned ≥ TALL + MAD ≈ TALL task-known > TSV-M/CART/Iso > TIES/TA > weight averaging",
     ((FINETUNED,), (TALL_MAD,), (TALL_KNOWN,), (TSV_M, CART, ISO), (TIES, TASK_ARITHMETIC), (WEIGHT_AVERAGING,)),
     ("≥", "≈", ">", ">", ">")),
    ("routing: MAD > Euclidean/cosine > diagonal",
     ((ROUTE_MAD,), (ROUTE_EUCLIDEAN, ROUTE_COSINE), (ROUTE_DIAGONAL,)), (">", ">")),
    ("routing: MAD > k-NN (k = 1, 3, 5, 10)", ((ROUTE_MAD,), tuple(ROUTE_KNN.values())), (">",)),
    ("adaptation: TA + AdaRank > TA + AdaMerging > TA", ((TA_ADARANK,), (TA_ADAMERGING,), (TASK_ARITHMETIC,)), (">", ">")),
    ("adaptation: CART + AdaRank > CART", ((CART_ADARANK,), (CART,)), (">",)),
    ("input-dependent: TALL + MAD > WEMoE > MoW-Merging", ((TALL_MAD,), (WEMOE,), (MOW,)), (">", ">")),
)


ORDERINGS_TEXT: tuple[tuple[str, tuple[Tier, ...], tuple[str, ...]], ...] = (
    ("accuracy: fine-tuned ≥ TALL + MAD > TIES/TA > weight averaging (MAD, Table 3)",
     ((FINETUNED,), (TALL_MAD,), (TIES, TASK_ARITHMETIC), (WEIGHT_AVERAGING,)), ("≥", ">", ">")),
    ("adaptation: TA + AdaRank > TA + AdaMerging > TA", ((TA_ADARANK,), (TA_ADAMERGING,), (TASK_ARITHMETIC,)), (">", ">")),
    ("adaptation: CART + AdaRank > CART", ((CART_ADARANK,), (CART,)), (">",)),
    ("LoRA experts: TR-Merging > Twin-Merging > Task Arithmetic", ((LORA_TR,), (LORA_TWIN,), (LORA_TA,)), (">", ">")),
)
SETTINGS = {"vision": (PAPER, ORDERINGS, "paper (CLIP ViT-B/32, 8 tasks)"),
            "text": (PAPER_TEXT, ORDERINGS_TEXT, "paper (language models, GLUE / NLP tasks)")}


def measure(results: pd.DataFrame, suite: str, tasks: Sequence[str], item: Item) -> float | None:
    """Our task average in percent, or None when the results table lacks it (a method not run in this profile)."""
    suite = suite + item.suite_suffix
    method = item.method
    if method is None:
        rows = results[(results["suite"] == suite) & (results["router"] == item.router) & (results["metric"] == item.metric)]
        if rows.empty:
            return None
        method = str(sorted(rows["method"].unique())[0])
    value = task_average(results, suite, method, item.router, tasks, item.metric)
    return None if value is None else 100 * value


def _holds(relation: str, left: Sequence[float], right: Sequence[float]) -> bool:
    if relation == ">":
        return min(left) > max(right)
    if relation == "≥":
        return min(left) >= max(right)
    if relation == "≈":
        return max(abs(a - b) for a in left for b in right) <= APPROX_POINTS
    raise ValueError(f"unknown relation {relation!r}")


def _short(item: Item) -> str:
    """A link names its routers without the "routing: " prefix of the paper table (the ordering's name says it)."""
    return item.label.removeprefix("routing: ")


def _tier(values: dict[Item, float | None], tier: Tier) -> tuple[str, list[float]]:
    present = [(item, value) for item in tier if (value := values[item]) is not None]
    return "/".join(f"{_short(item)} {value:.1f}" for item, value in present), [value for _, value in present]


def check_orderings(results: pd.DataFrame, suite: str, tasks: Sequence[str], kind: str = "vision") -> pd.DataFrame:
    """One row per link of every ordering: the two sides with our numbers and whether it holds here
    ("not measured" when a side has none of its methods in the results table)."""
    rows = []
    for name, tiers, relations in SETTINGS[kind][1]:
        values = {item: measure(results, suite, tasks, item) for tier in tiers for item in tier}
        for relation, left, right in zip(relations, tiers, tiers[1:], strict=False):
            left_text, left_values = _tier(values, left)
            right_text, right_values = _tier(values, right)
            link = f"{'/'.join(map(_short, left))} {relation} {'/'.join(map(_short, right))}"
            if not left_values or not right_values:
                holds = "not measured"
            else:
                holds = "yes" if _holds(relation, left_values, right_values) else "no"
            rows.append({"ordering": name, "link": link, "ours (%)": f"{left_text or '-'} vs {right_text or '-'}",
                         "holds here": holds})
    return pd.DataFrame(rows)


def ordering_summary(links: pd.DataFrame) -> pd.DataFrame:
    """Per ordering: holds (every link holds), no (some link fails), or not measured."""
    rows = []
    for name, group in links.groupby("ordering", sort=False):
        verdicts = set(group["holds here"])
        summary = "no" if "no" in verdicts else "not measured" if "not measured" in verdicts else "yes"
        rows.append({"paper's ordering": name, "holds here": summary})
    return pd.DataFrame(rows)


def paper_table(results: pd.DataFrame, suite: str, tasks: Sequence[str], kind: str = "vision") -> pd.DataFrame:
    """Each quoted paper figure next to ours (percent; '-' = not run in this profile)."""
    figures, _, column = SETTINGS[kind]
    rows = []
    for figure in figures:
        ours = measure(results, suite, tasks, figure.item)
        rows.append({
            "method": figure.item.label,
            "results key": f"{figure.item.method or '*'} / {figure.item.router} / {figure.item.metric}"
                           + (f" (suite {suite}{figure.item.suite_suffix})" if figure.item.suite_suffix else ""),
            column: f"{figure.value:.1f}",
            "source": f"{figure.source}, {figure.where}",
            "ours": "-" if ours is None else f"{ours:.1f}",
        })
    return pd.DataFrame(rows)


def build_paper_report(suite: str, tasks: Sequence[str], results: pd.DataFrame, kind: str = "vision") -> Report:
    """The "Paper vs this benchmark" part of reports/report.md."""
    links = check_orderings(results, suite, tasks, kind)
    if kind == "text":
        intro = ("The papers' numbers are **quoted constants** from three language settings, not measured here: "
                 f"RoBERTa-base on 7 GLUE tasks ({ADARANK}, Table 2), Qwen2.5-0.5B-Instruct LoRA experts on 5 GLUE "
                 f"tasks ({TR}, Table 1) and T5-large on 7 NLP tasks ({MAD}, Table 3). Their models, tasks and "
                 "checkpoints differ from each other and from ours, so compare orderings, not figures. Ours: "
                 f"`{suite}` (LoRA rows: `{suite}-lora`), average over its {len(tasks)} tasks' test splits, from "
                 "`reports/results.parquet`; adapted rows are the final step.")
    else:
        intro = ("The papers' numbers are **quoted constants** (CLIP ViT-B/32 fine-tuned on 8 real datasets), not measured "
                 f"here. Sources: {ADARANK}; {MAD}. The two papers use different fine-tuned checkpoints (fine-tuned 90.5 vs "
                 f"92.8), so compare orderings within a paper rather than figures across them. Ours: `{suite}`, average "
                 f"over its {len(tasks)} tasks' test splits, from `reports/results.parquet`. Routing rows are routing "
                 "accuracy (the share of test inputs routed to their own task); adapted rows (AdaMerging, AdaRank) are the "
                 "final step, one model for every input with each task's head.")
    sections = [
        "# Paper vs this benchmark",
        intro,
        markdown(paper_table(results, suite, tasks, kind)),
        "## The papers' orderings, checked on our numbers",
        f"Computed from the results table on every run. `a > b`: a is higher; `a ≥ b`: a is not lower; `a ≈ b`: within "
        f"{APPROX_POINTS:g} percentage point of each other. A tier `b/c` means every member: `a > b/c` holds when a "
        "beats the best of b and c, `b/c > d` when the worst of b and c beats d. Chains are checked between neighbours.",
        markdown(ordering_summary(links)),
        markdown(links),
    ]
    return Report("\n\n".join(sections) + "\n")
