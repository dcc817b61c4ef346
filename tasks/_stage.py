"""What every stage shares: --help, params loading, one-line errors with exit code 2, interrupts that clean up and
end with one line (130 / 143), and its wall time."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from mergeflow.errors import MergeflowError, describe_os_error, hits_a_limit
from mergeflow.interrupts import ExitOnInterrupt
from mergeflow.params import Params, load_params

StageBody = Callable[[argparse.Namespace, Params], None]


def run_stage(stage: str, description: str, body: StageBody, item_help: str | None = None, epilog: str | None = None) -> None:
    """Parse arguments, load and validate params.yaml, run ``body``; print its time or a readable error. ``epilog``
    (printed as it is, after the arguments) lists what ``--help`` should say beyond them: the items' hyperparameters."""
    parser = argparse.ArgumentParser(prog=f"python -m tasks.{stage}", description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if item_help:
        parser.add_argument("item", help=item_help)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    args = parser.parse_args()
    name = f"{stage}@{args.item}" if item_help else stage
    start = time.perf_counter()
    # SIGINT/SIGTERM: clean up, one line, 130/143; after the body they are ignored while the process leaves
    with ExitOnInterrupt(f"mergeflow: stage {name}", leaving=True) as interrupt:
        try:
            body(args, load_params(args.params))
        except MergeflowError as exc:
            print(f"mergeflow: stage {name} failed:\n{exc}", file=sys.stderr)
            sys.exit(2)
        except OSError as exc:
            if not hits_a_limit(exc):  # other system errors keep their traceback (stages have no --debug)
                raise
            print(f"mergeflow: stage {name} failed: {describe_os_error(exc)}", file=sys.stderr)
            sys.exit(2)
    if interrupt.exit_code is not None:
        sys.exit(interrupt.exit_code)
    print(f"[mergeflow] stage {name} took {time.perf_counter() - start:.1f} s", flush=True)


def require_task(params: Params, task: str) -> None:
    """Stages called with a task name check it against params.yaml before touching any file."""
    if task not in params.suite.tasks:
        raise MergeflowError(f"{task!r} is not in suite.tasks ({', '.join(params.suite.tasks)})")
