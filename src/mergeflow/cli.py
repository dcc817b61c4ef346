"""The `mergeflow` command: check params, show the results table (merge/route commands arrive with their methods)."""

from __future__ import annotations

import argparse
import sys

from mergeflow.errors import MergeflowError


def _cmd_check_params(args: argparse.Namespace) -> None:
    from mergeflow.params import load_params

    params = load_params(args.path)
    print(f"{args.path}: valid ({params.suite.name}, {len(params.suite.tasks)} tasks, backbone {params.backbone.model})")


def _cmd_results(args: argparse.Namespace) -> None:
    import pandas as pd

    from mergeflow.evaluation.results import pivot

    try:
        table = pd.read_parquet(args.path)
    except (FileNotFoundError, OSError) as exc:
        raise MergeflowError(f"{args.path}: cannot read the results table ({exc}); run the pipeline first") from exc
    print(pivot(table, args.metric).to_string(float_format=lambda v: f"{v:.4f}"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mergeflow",
        description="Merge fine-tuned experts into one multi-task model and route inputs whose task is unknown. "
        "The pipeline itself runs with `dvc repro`; these commands inspect and use its artifacts.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-params", help="validate params.yaml and report the first problem by key")
    check.add_argument("path", nargs="?", default="params.yaml")
    check.set_defaults(func=_cmd_check_params)
    results = sub.add_parser("results", help="print the results table as method x task (with the average)")
    results.add_argument("--path", default="reports/results.parquet")
    results.add_argument("--metric", default="accuracy")
    results.set_defaults(func=_cmd_results)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except MergeflowError as exc:
        print(f"mergeflow: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
