"""Probe of the offline text suite on the packaged MiniLM-L6: is each task learnable, not trivial, and cheap enough?

Not a test. For every task of the suite it generates the splits, builds the frozen prototype head from the
pretrained encoder, and fine-tunes the whole encoder (optionally also a LoRA expert) for a few steps on the CPU. It
prints per task: the pretrained (zero-shot, prototype-head) and fine-tuned test accuracy and the seconds spent; then
how hard task routing is on pretrained embeddings: each test input goes to the task whose mean pretrained embedding
(from ``--route-samples`` training inputs per task, as MAD calibrates on ~64) is nearest in cosine, and the
confusable pair's share of mistakes is reported. The whole run repeats exactly with the same arguments.

Examples::

    nice -n 5 python benchmarks/text_suite_probe.py
    nice -n 5 python benchmarks/text_suite_probe.py --steps 60 --batch-size 16 --lora --out benchmarks/results/x.txt
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub: the backbone comes from the installed package
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mergeflow.data.task_spec import SPLITS  # noqa: E402
from mergeflow.data.text_suites import CONFUSABLE_PAIRS, text_suite_tasks  # noqa: E402
from mergeflow.evaluation.accuracy import accuracy  # noqa: E402
from mergeflow.lora.adapters import LoraSpec, add_lora  # noqa: E402
from mergeflow.models.text_classifier import TextClassifier  # noqa: E402
from mergeflow.models.text_encoder import TextEncoder, load_text_encoder, mlp_lora_targets, tokenize  # noqa: E402
from mergeflow.models.text_heads import prototype_head  # noqa: E402
from mergeflow.training.finetune import finetune_encoder  # noqa: E402
from mergeflow.training.loop import OptimConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class TaskRow:
    task: str
    classes: int
    zero_shot: float
    finetuned: float
    lora: float | None
    first_loss: float
    last_loss: float
    seconds_data: float
    seconds_head: float
    seconds_finetune: float
    seconds_lora: float | None


@torch.no_grad()
def embed(encoder: TextEncoder, token_ids: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """L2-normalised pretrained embeddings, in batches."""
    encoder.eval()
    return torch.cat([F.normalize(encoder(token_ids[i : i + batch_size]), dim=-1) for i in range(0, len(token_ids), batch_size)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="text6")
    parser.add_argument("--source", default=None, help="model folder or hub id (default: the packaged MiniLM-L6)")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=64, help="training examples per class in a prototype head")
    parser.add_argument("--route-samples", type=int, default=64, help="training inputs per task for the routing means")
    parser.add_argument("--skip-finetune", action="store_true", help="zero-shot accuracy and routing only")
    parser.add_argument("--lora", action="store_true", help="also train a LoRA expert (rank 8, alpha 32, MLP, lr 1e-4)")
    parser.add_argument("--tasks", nargs="*", default=None, help="a subset of the suite's tasks (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "text_suite_probe.txt")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    pretrained, tokenizer = load_text_encoder(args.source)
    seconds_load = time.perf_counter() - start
    sizes = {"train": args.train, "val": args.val, "test": args.test}
    rows: list[TaskRow] = []
    route_train: dict[str, torch.Tensor] = {}
    route_test: dict[str, torch.Tensor] = {}
    for name, spec in text_suite_tasks(args.suite).items():
        if args.tasks and name not in args.tasks:
            continue
        t0 = time.perf_counter()
        splits = {}
        for split in SPLITS:
            texts, labels, _ = spec.make_split(split, sizes[split], args.seed)
            splits[split] = (tokenize(tokenizer, texts, args.max_tokens), torch.from_numpy(labels))
        (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
        t1 = time.perf_counter()
        head = prototype_head(pretrained, train_x, train_y, spec.num_classes, per_class=args.per_class)
        test_features = embed(pretrained, test_x)
        zero_shot = float(((test_features @ head.T).argmax(dim=-1) == test_y).float().mean())
        route_train[name] = embed(pretrained, train_x[: args.route_samples])
        route_test[name] = test_features
        t2 = time.perf_counter()
        finetuned, losses = float("nan"), [float("nan")]
        if not args.skip_finetune:
            classifier = TextClassifier(copy.deepcopy(pretrained), head)
            config = OptimConfig(args.lr, args.steps, args.batch_size, args.weight_decay, args.warmup, args.seed)
            losses = finetune_encoder(classifier, train_x, train_y, config, description=f"finetune {name}")
            finetuned = accuracy(classifier, test_x, test_y, batch_size=128)
        t3 = time.perf_counter()
        lora_acc, seconds_lora = None, None
        if args.lora and not args.skip_finetune:
            encoder = copy.deepcopy(pretrained)
            adapted = add_lora(encoder, LoraSpec(rank=8, alpha=32.0, dropout=0.1, targets=mlp_lora_targets(encoder)))
            lora_classifier = TextClassifier(adapted, head)
            lora_config = OptimConfig(1e-4, args.steps, args.batch_size, 0.01, args.warmup, args.seed)
            finetune_encoder(lora_classifier, train_x, train_y, lora_config, description=f"lora {name}")
            lora_acc = accuracy(lora_classifier, test_x, test_y, batch_size=128)
            seconds_lora = time.perf_counter() - t3
        rows.append(TaskRow(name, spec.num_classes, zero_shot, finetuned, lora_acc, losses[0],
                            sum(losses[-10:]) / len(losses[-10:]), t1 - t0, t2 - t1, t3 - t2, seconds_lora))
        print(f"{name}: zero-shot {zero_shot:.3f} -> fine-tuned {finetuned:.3f}"
              + (f", LoRA {lora_acc:.3f}" if lora_acc is not None else "") + f" ({t3 - t0:.1f} s)", flush=True)

    lines = report(rows, route_train, route_test, args, seconds_load, time.perf_counter() - start)
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")


def report(rows: list[TaskRow], route_train: dict[str, torch.Tensor], route_test: dict[str, torch.Tensor],
           args: argparse.Namespace, seconds_load: float, seconds_total: float) -> list[str]:
    lines = [
        f"# text suite probe: {args.suite} on the packaged MiniLM-L6 (CPU, {args.threads} threads)",
        "",
        f"splits train/val/test = {args.train}/{args.val}/{args.test}, max {args.max_tokens} tokens; full fine-tune "
        f"{args.steps} steps x batch {args.batch_size}, AdamW lr {args.lr}, wd {args.weight_decay}, warm-up {args.warmup}, "
        f"seed {args.seed}; prototype heads from {args.per_class} train examples per class, scale 100"
        + ("; LoRA r8 a32 on the MLP, lr 1e-4, wd 0.01" if args.lora else ""),
        "",
        "| task | classes | zero-shot (prototype head) | fine-tuned | " + ("LoRA | " if args.lora else "")
        + "loss first -> last10 | data s | head s | fine-tune s | " + ("LoRA s |" if args.lora else ""),
        "|---|---|---|---|" + ("---|" if args.lora else "") + "---|---|---|---|" + ("---|" if args.lora else ""),
    ]
    for r in rows:
        lora = f" {r.lora:.3f} |" if r.lora is not None else ""
        lora_s = f" {r.seconds_lora:.1f} |" if r.seconds_lora is not None else ""
        lines.append(f"| {r.task} | {r.classes} | {r.zero_shot:.3f} | {r.finetuned:.3f} |{lora} {r.first_loss:.3f} -> "
                     f"{r.last_loss:.3f} | {r.seconds_data:.1f} | {r.seconds_head:.1f} | {r.seconds_finetune:.1f} |{lora_s}")
    mean_zs = sum(r.zero_shot for r in rows) / len(rows)
    mean_ft = sum(r.finetuned for r in rows) / len(rows)
    lines += ["", f"mean accuracy: zero-shot {mean_zs:.3f}, fine-tuned {mean_ft:.3f}"
              + (f", LoRA {sum(r.lora or 0 for r in rows) / len(rows):.3f}" if args.lora else "")]
    lines += [f"seconds: load MiniLM {seconds_load:.1f}, data {sum(r.seconds_data for r in rows):.1f}, heads+embeddings "
              f"{sum(r.seconds_head for r in rows):.1f}, full fine-tunes {sum(r.seconds_finetune for r in rows):.1f}"
              + (f", LoRA {sum(r.seconds_lora or 0 for r in rows):.1f}" if args.lora else "") + f", total {seconds_total:.1f}"]

    names = list(route_test)
    means = F.normalize(torch.stack([route_train[n].mean(dim=0) for n in names]), dim=-1)
    lines += ["", f"## task routing on pretrained embeddings (nearest task mean of {args.route_samples} train inputs, "
              "cosine)", "",
              "| true task | routed correctly | most confused with |", "|---|---|---|"]
    correct, total = 0, 0
    confusion = torch.zeros(len(names), len(names), dtype=torch.long)
    for i, name in enumerate(names):
        routed = (route_test[name] @ means.T).argmax(dim=-1)
        confusion[i] = torch.bincount(routed, minlength=len(names))
        correct += int(confusion[i, i])
        total += len(routed)
        others = confusion[i].clone()
        others[i] = -1
        j = int(others.argmax())
        lines.append(f"| {name} | {float(confusion[i, i]) / len(routed):.3f} | {names[j]} ({int(confusion[i, j])}) |")
    lines += ["", f"overall routing accuracy {correct / total:.3f}"]
    for a, b in CONFUSABLE_PAIRS:
        if a in names and b in names:
            i, j = names.index(a), names.index(b)
            errors = int(confusion.sum() - confusion.trace())
            within = int(confusion[i, j] + confusion[j, i])
            pair = float(confusion[i, i] + confusion[j, j]) / float(confusion[i].sum() + confusion[j].sum())
            lines.append(f"confusable pair {a} / {b}: {within} of {errors} routing errors are between the two; "
                         f"pair accuracy {pair:.3f}")
    return lines


if __name__ == "__main__":
    main()
