"""Serve the pipeline flow as a scheduled Prefect deployment (``flow.serve``): one long-running process per clone.

Why ``serve`` rather than a work pool by default: it needs nothing but a Prefect server, and the process that
polls for runs is the one that runs them, in this clone. For a process work pool instead, see ``prefect.yaml``
and ``flows/README.md``. Start a server first (``prefect server start --host 127.0.0.1``) and export
``PREFECT_API_URL``; then trigger runs from the UI or with ``prefect deployment run 'mergeflow-pipeline/NAME'``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

try:
    from flows.dvc_graph import PlanError, find_root, plan
    from flows.pipeline import DEFAULT_LOG_DIR, pipeline_flow
except ImportError:  # run as a file from elsewhere: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from flows.dvc_graph import PlanError, find_root, plan
    from flows.pipeline import DEFAULT_LOG_DIR, pipeline_flow


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.deploy",
        description=(
            "Create (or update) the deployment FLOW/NAME with a cron schedule on the Prefect server named by "
            "PREFECT_API_URL, then serve it: this process runs every scheduled or triggered run of the pipeline "
            "flow in this clone until it is stopped (Ctrl-C). Each run asks DVC what changed, so a run with "
            "nothing to do finishes in seconds."
        ),
    )
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="stages to reproduce (default: every stage)")
    parser.add_argument("--repo", default=".", help="the DVC repository (default: the current directory)")
    parser.add_argument("--name", default="nightly", help="deployment name (default: nightly)")
    parser.add_argument("--cron", default="0 2 * * *", help="cron schedule, server time zone (default: 02:00 daily)")
    parser.add_argument("--paused", action="store_true", help="create the schedule paused (resume it in the UI)")
    parser.add_argument("-j", "--max-concurrent", type=int, default=None,
                        help="stages at once (default: the number of visible GPUs, at least 1)")
    parser.add_argument("--retries", type=int, default=1, help="retries of a failed stage (default: 1)")
    parser.add_argument("--retry-delay", type=float, default=10.0, help="seconds between retries (default: 10)")
    parser.add_argument("--dask-address", default=None, help="run stages on this Dask cluster (default: threads)")
    parser.add_argument("--exchange", action="store_true",
                        help="workers exchange artifacts through the default DVC remote (see flows/README.md)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Check the repository and targets with DVC, then serve; the deployment's parameters pin this clone's path."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        print(f"{parser.prog}: error: PREFECT_API_URL is not set: start `prefect server start --host 127.0.0.1` "
              "and export PREFECT_API_URL=http://127.0.0.1:4200/api (a served deployment needs a server)",
              file=sys.stderr)
        return 2
    try:
        root = find_root(Path(args.repo).resolve())
        plan(root, args.targets)  # unknown targets fail here, not at 2 a.m.
    except PlanError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    os.chdir(root)  # the served runs load flows/pipeline.py relative to this directory
    pipeline_flow.serve(
        name=args.name,
        cron=args.cron,
        paused=args.paused or None,
        parameters={
            "root": str(root), "targets": list(args.targets), "max_concurrent": args.max_concurrent,
            "retries": args.retries, "retry_delay_seconds": args.retry_delay, "dask_address": args.dask_address,
            "exchange": args.exchange, "log_dir": DEFAULT_LOG_DIR,
        },
        description="The mergeflow DVC pipeline: DVC decides what changed; stages run as Prefect tasks.",
        tags=["mergeflow", "dvc"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
