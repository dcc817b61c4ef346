"""The `mergeflow` command: check params, show the results table, merge checkpoints on disk (``merge``), adapt a merge
on unlabelled inputs (``adapt``, in ``cli_adapt``), fit and apply task routers on features (``route``, in ``cli_route``),
convert public checkpoints to safetensors (``convert-checkpoint``, in ``cli_convert``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from mergeflow.cli_adapt import add_adapt_command
from mergeflow.cli_convert import add_convert_command
from mergeflow.cli_inputs import parse_experts
from mergeflow.cli_route import add_route_commands
from mergeflow.errors import MergeflowError, describe_os_error
from mergeflow.interrupts import ExitOnInterrupt, exit_while_starting


def _cmd_check_params(args: argparse.Namespace) -> None:
    from mergeflow.params import load_params

    path = args.params or args.path
    params = load_params(path)
    source = f", {params.suite.source} data" if params.suite.source == "real" else ""
    print(f"{path}: valid ({params.suite.name}, {len(params.suite.tasks)} tasks{source}, backbone {params.backbone.model})")


def _cmd_results(args: argparse.Namespace) -> None:
    import pandas as pd
    from pyarrow import ArrowException

    from mergeflow.evaluation.results import pivot

    if not os.path.exists(args.path):
        raise MergeflowError(f"{args.path}: no such file; run the pipeline first (dvc repro) or give --path")
    if os.path.isdir(args.path):
        raise MergeflowError(f"{args.path}: is a directory; give the results table's Parquet file")
    try:
        table = pd.read_parquet(args.path)
    except (OSError, ValueError, ArrowException) as exc:  # ArrowInvalid: not Parquet at all
        raise MergeflowError(f"{args.path}: not a readable Parquet results table ({' '.join(str(exc).split())})") from None
    print(pivot(table, args.metric).to_string(float_format=lambda v: f"{v:.4f}"))


def _cmd_merge(args: argparse.Namespace) -> None:
    from mergeflow.merging.registry import parse_assignments
    from mergeflow.merging.streaming import merge_files

    experts = parse_experts(args.expert)
    overrides = parse_assignments(args.method, args.set)
    out = os.path.abspath(args.out)
    inputs = [args.base, *experts.values()]
    if any(os.path.exists(path) and os.path.exists(out) and os.path.samefile(path, out) for path in inputs):
        raise MergeflowError(f"--out {args.out} is one of the input checkpoints; choose another path")
    try:
        summary = merge_files(args.method, args.base, experts, args.out, overrides, task=args.task)
    except OSError as exc:
        raise MergeflowError(f"cannot write {args.out}: {describe_os_error(exc)}") from exc
    what = {"model": "merged model", "bank": "shared vector + mask bank", "task": f"model of task {args.task!r}"}[summary.output]
    settings = ", ".join(f"{key}={value}" for key, value in summary.hyperparameters.items()) or "no hyperparameters"
    print(f"wrote {args.out}: {what}, {summary.method} ({settings}) over {len(summary.tasks)} experts")


def _methods_help() -> str:
    """The method list for ``merge --help``, generated from the declarations (the registry binds every one of them,
    and only them) so it never goes stale; the declarations are torch-free, so ``merge --help`` imports no torch."""
    from mergeflow.declarations.merging import MERGE_DECLARATIONS

    lines = ["methods (--method) and their hyperparameters (--set key=value, default in brackets):"]
    for method in MERGE_DECLARATIONS.values():
        kind = "writes shared vector + mask bank, or --task's model" if method.returns == "bank" else "writes the merged model"
        lines.append(f"  {method.name}: {method.summary} [{kind}]")
        for parameter in method.hyperparameters:
            default = "none" if parameter.default is None else parameter.default
            lines.append(f"      {parameter.name} [{default}]  {parameter.help}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """One readable line and exit status 2 for bad arguments; the merge method list is built only for --help."""

    lazy_epilog = False

    def format_help(self) -> str:
        if self.lazy_epilog:
            self.epilog = _methods_help()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mergeflow",
        description="Merge fine-tuned experts into one multi-task model and route inputs whose task is unknown. "
        "The pipeline itself runs with `dvc repro`; these commands inspect and use its artifacts.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error (for bug reports)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    check = sub.add_parser("check-params", help="validate params.yaml and report the first problem by key")
    check.add_argument("path", nargs="?", default="params.yaml")
    check.add_argument("--params", metavar="PATH", help="the params file or profile to check (as the stages' --params)")
    check.set_defaults(func=_cmd_check_params)
    results = sub.add_parser("results", help="print the results table as method x task (with the average)")
    results.add_argument("--path", default="reports/results.parquet")
    results.add_argument("--metric", default="accuracy")
    results.set_defaults(func=_cmd_results)
    merge = sub.add_parser(
        "merge",
        help="merge expert checkpoints (.safetensors) into one model with any method, streaming tensor by tensor",
        description="Merge fine-tuned experts of one base model, reading every checkpoint tensor by tensor from\n"
        "safetensors files (peak memory ~ one tensor per expert, not whole models). Task vectors are\n"
        "tau_t = expert_t - base over floating-point entries; integer buffers are copied from the base. The\n"
        "output is written atomically: on any error no file is left behind (exit status 2, one line); on\n"
        "SIGINT/SIGTERM neither (exit status 130/143, one line).\n\n"
        "example: mergeflow merge --method ties --base base.safetensors --expert cars=cars.safetensors \\\n"
        "           --expert dtd=dtd.safetensors --out merged.safetensors --set k=0.2 --set scale=1.0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    merge.lazy_epilog = True
    merge.add_argument("--method", required=True, metavar="NAME", help="merging method, a results-table name (listed below)")
    merge.add_argument("--base", required=True, metavar="BASE.safetensors", help="the pretrained model theta_0 the experts were fine-tuned from")
    merge.add_argument(
        "--expert", required=True, action="append", default=[], metavar="NAME=PATH",
        help="one fine-tuned expert and its task name; repeat for every expert (same keys, shapes, dtypes as --base)",
    )
    merge.add_argument("--out", required=True, metavar="OUT.safetensors", help="where to write the result")
    merge.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a hyperparameter of the method (repeatable); 'none' for optional ones; unknown keys are refused",
    )
    merge.add_argument(
        "--task", metavar="NAME",
        help="tall_ta, tall_ties, emr only: write task NAME's reconstructed model base + rescaler * (mask ⊙ shared) "
        "instead of the shared vector and the bit-packed mask bank",
    )
    merge.set_defaults(func=_cmd_merge)
    add_adapt_command(sub)
    add_route_commands(sub)
    add_convert_command(sub)
    return parser


def main(argv: list[str] | None = None, leaving: bool = False) -> int:
    """Run one command: 0 on success; a user error (MergeflowError, or the system refusing a file) is one line and
    exit 2; anything else is a bug in mergeflow, one line and exit 1, its traceback shown with ``--debug``. SIGINT
    and SIGTERM clean up (temp files, new folders) and end with one line and 130 / 143 (``mergeflow.interrupts``);
    ``leaving`` (the process ends after this command) ignores them once the command is done."""
    args = build_parser().parse_args(argv)
    code = 0
    with ExitOnInterrupt("mergeflow:", args.debug, leaving) as interrupt:
        code = _run(args)
    return code if interrupt.exit_code is None else interrupt.exit_code


def run() -> NoReturn:
    """The ``mergeflow`` program: from here until the command's own handling starts, SIGINT/SIGTERM end it at once
    with one line (nothing has been written yet); after the command they are ignored while the process exits."""
    exit_while_starting("mergeflow:")
    sys.exit(main(leaving=True))


def _run(args: argparse.Namespace) -> int:
    try:
        args.func(args)
    except MergeflowError as exc:
        if args.debug:
            raise
        print(f"mergeflow: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the system refuses (permissions, a full disk, ulimit -f) that no layer below named
        if args.debug:
            raise
        print(f"mergeflow: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a programming error: say so in one line, the traceback with --debug
        if args.debug:
            raise
        message = " ".join(str(exc).split())
        print(f"mergeflow: internal error ({type(exc).__name__}: {message[:300]}); rerun with --debug for the traceback",
              file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    run()
