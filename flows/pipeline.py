"""Run the DVC pipeline as a Prefect flow: one Prefect task per DVC stage, DVC still the judge of what is up to date.

Why a flow at all, when ``dvc repro`` exists: DVC runs stages one at a time and has no scheduler, retries or UI.
The flow reads the stage graph from DVC (``flows/dvc_graph.py``: no second copy of ``dvc.yaml``), asks DVC which
stages changed, adds their descendants, and runs each one as ``dvc --wait-for-lock repro --single-item STAGE``
as soon as its upstream stages have finished, at most ``--max-concurrent`` at a time (the longest chain of recorded
stage times first: ``flows/priority.py``). DVC's repository lock is
released while a stage's command runs, so concurrent stages only queue for the short lock-held moments
(collecting, hashing, writing ``dvc.lock``) and ``dvc.lock`` stays consistent.

Run ``python -m flows.pipeline --help`` (or ``python flows/pipeline.py --help``) from the repository root.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

try:
    from flows.dvc_graph import Plan, PlanError, find_root, plan
    from flows.priority import DURATIONS_FILE, load_durations, path_lengths, save_durations
    from flows.workspace_lock import WorkspaceBusy, exclusive_workspace
    from mergeflow.dvc_rwlock import RWLOCK, reset_if_half_written
except ImportError:  # loaded by file path (`python flows/pipeline.py`, a Prefect entrypoint) from elsewhere
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "src")]
    from flows.dvc_graph import Plan, PlanError, find_root, plan
    from flows.priority import DURATIONS_FILE, load_durations, path_lengths, save_durations
    from flows.workspace_lock import WorkspaceBusy, exclusive_workspace
    from mergeflow.dvc_rwlock import RWLOCK, reset_if_half_written

DEFAULT_LOG_DIR = ".dvc/tmp/flow_logs"  # inside .dvc/tmp: ignored by git and by DVC, kept between runs
CLONE_ENV = "MERGEFLOW_CLONE"  # on a remote worker: the path of that machine's clone of the repository
ARTIFACT_KEY = "mergeflow-pipeline"
RESULTS_CSV = Path("reports/results.csv")
MAX_TABLE_ROWS = 400  # of reports/results.csv in the artifact: the UI is for a glance, the file is the record


class PipelineFailed(Exception):
    """A stage failed after its retries: the flow run ends Failed, with the summary attached."""

    def __init__(self, message: str, summary: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.summary = summary or {}

    def __reduce__(self) -> tuple[Any, ...]:  # keep the summary when Prefect pickles the final state
        return (PipelineFailed, (str(self), self.summary))


class StageFailed(Exception):
    """`dvc repro` exited non-zero for one stage (one attempt); Prefect's retry logic sees this exception."""


@dataclass
class StageRun:
    """One row of the results table: what DVC did with a stage in this run."""

    stage: str
    outcome: str  # ran | restored from run cache | pulled | up to date | failed | skipped | not started
    attempts: int = 0
    seconds: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    host: str = ""
    log: str = ""
    error: str = ""
    threads: int = 0  # OMP/MKL threads the stage was given; 0: the environment's, untouched


# --------------------------------------------------------------------------------------------------------------
# The stage task: a thin wrapper around the dvc CLI, so that it can run in a thread, a Dask worker or elsewhere.
# --------------------------------------------------------------------------------------------------------------


def _log_folder(clone: Path, log_dir: str) -> Path:
    return Path(log_dir) if Path(log_dir).is_absolute() else clone / log_dir


def _log_path(clone: Path, log_dir: str, stage: str) -> Path:
    return _log_folder(clone, log_dir) / (re.sub(r"[^A-Za-z0-9@._-]+", "_", stage) + ".log")


def _outcome(stage: str, output: str) -> str:
    """What DVC did, read from its own messages about this stage (ancestors may appear too with ``--pull``)."""
    quoted = re.escape(stage)
    if re.search(rf"Running stage '{quoted}'", output):
        return "ran"
    if re.search(rf"Stage '{quoted}' is cached - skipping run", output):
        return "restored from run cache"
    if re.search(rf"Pulling data for stage: '{quoted}'", output) and not re.search(
            rf"Unable to pull data for stage: '{quoted}'", output):
        return "pulled"
    return "up to date"


def _stream(cmd: list[str], cwd: Path, env: dict[str, str], log_file: Any, logger: Any, stage: str) -> tuple[int, str]:
    """Run ``cmd``; every output line goes to the Prefect logger and to the stage's log file as it arrives."""
    log_file.write(f"$ {' '.join(cmd)}\n")
    log_file.flush()
    lines: list[str] = []
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            log_file.write(line)
            log_file.flush()
            if line.strip():
                logger.info("[%s] %s", stage, line.rstrip())
        returncode = proc.wait()
    return returncode, "".join(lines)


# DVC decides what is up to date: Prefect's own result caching stays off.
@task(name="dvc-stage", cache_policy=NO_CACHE, persist_result=False)
def run_stage(stage: str, root: str, log_dir: str, exchange: bool = False, gpu: str | None = None,
              threads: int | None = None) -> dict[str, Any]:
    """Reproduce one DVC stage with the dvc CLI and report what DVC did.

    With ``exchange`` the stage runs in this machine's clone (``$MERGEFLOW_CLONE``, else ``root``): ``dvc repro
    --pull`` first restores every upstream stage from the shared remote (their outputs and run-cache records were
    pushed by whichever worker ran them), then ``dvc push --run-cache`` publishes this stage's outputs.
    """
    from prefect.runtime import task_run

    logger = get_run_logger()
    attempt = max(int(task_run.run_count or 1), 1)
    clone = Path(os.environ.get(CLONE_ENV, root)) if exchange else Path(root)
    if not (clone / ".dvc").is_dir():
        raise StageFailed(f"{stage}: {clone} is not the root of a DVC repository (set ${CLONE_ENV} on this worker)")
    dvc = [sys.executable, "-m", "mergeflow.dvc_cli"]  # dvc itself, its state files written atomically
    if exchange:
        commands = [[*dvc, "--wait-for-lock", "repro", "--pull", stage], [*dvc, "push", "--run-cache", stage]]
    else:
        commands = [[*dvc, "--wait-for-lock", "repro", "--single-item", stage]]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    log_path = _log_path(clone, log_dir, stage)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    output = ""
    with log_path.open("w" if attempt == 1 else "a") as log_file:
        log_file.write(f"=== {stage}: attempt {attempt} on {socket.gethostname()} in {clone}"
                       f"{f' (GPU {gpu})' if gpu is not None else ''}{f' with {threads} threads' if threads else ''}"
                       f" at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        for cmd in commands:
            returncode, text = _stream(cmd, clone, env, log_file, logger, stage)
            output += text
            if returncode != 0:
                tail = "\n".join(text.strip().splitlines()[-5:])
                raise StageFailed(f"{stage}: `{' '.join(cmd[2:])}` exited with {returncode} on attempt {attempt} "
                                  f"(log: {log_path})\n{tail}")
    finished = time.time()
    logger.info("%s: %s in %.1f s", stage, _outcome(stage, output), finished - started)
    return asdict(StageRun(stage=stage, outcome=_outcome(stage, output), attempts=attempt, seconds=finished - started,
                           started=started, finished=finished, host=socket.gethostname(), log=str(log_path),
                           threads=threads or 0))


# --------------------------------------------------------------------------------------------------------------
# The flow: plan with DVC, then dispatch stages as their upstream stages finish.
# --------------------------------------------------------------------------------------------------------------


def default_gpus() -> list[str]:
    """Visible GPU ids (``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi -L``); empty on a CPU-only machine."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
    return []


def local_cores() -> int:
    """CPUs this process may use (its affinity mask where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def stage_threads(cores: int, max_concurrent: int) -> int:
    """Intra-op threads of every stage when up to ``max_concurrent`` stages share ``cores``: an even share, at least 1.

    Why: torch gives each process a thread per core, so two stages side by side oversubscribe the CPUs (stages
    slowed down 10-28x on 2 CPUs). The share depends on the limit only, never on what happens to run at the moment:
    torch's results depend on the thread count (the default pipeline at 1 thread and at 2 differs in 109 of 121
    output hashes), so a count that varied with timing would make the same run give different bits.
    """
    return max(1, cores // max(1, max_concurrent))


def _task_runner(max_concurrent: int, dask_address: str | None) -> TaskRunner[Any]:
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=max_concurrent)


def _dispatch(the_plan: Plan, runner: Any, *, max_concurrent: int, retries: int, retry_delay_seconds: float,
              keep_going: bool, exchange: bool, log_dir: str, gpus: Sequence[str], logger: Any,
              threads_per_stage: int | None = None, priority: dict[str, float] | None = None) -> list[StageRun]:
    """Submit each planned stage once its upstream stages succeeded, never more than ``max_concurrent`` at once.

    Submitting only ready stages (rather than everything with ``wait_for``) keeps a thread or Dask slot from
    being held by a task that is only waiting, and makes the concurrency limit exact. Among ready stages, the
    highest ``priority`` starts first (ties: DVC's order). Every stage gets ``threads_per_stage`` threads (None: the
    environment's setting).
    """
    from prefect.futures import as_completed

    pending = list(the_plan.order)
    rows: dict[str, StageRun] = {}
    futures: dict[str, Any] = {}
    running: dict[Any, tuple[str, str | None]] = {}
    submitted: dict[str, float] = {}
    free_gpus = list(gpus)
    stop = False
    rank = priority or {}
    while pending or running:
        for stage in sorted(pending, key=lambda s: -rank.get(s, 0.0)):  # stable: ties keep DVC's order
            if stop or len(running) >= max_concurrent:
                break
            upstream = the_plan.upstream[stage]
            bad = [u for u in upstream if u in rows and rows[u].outcome in ("failed", "skipped")]
            if bad:
                pending.remove(stage)
                rows[stage] = StageRun(stage, "skipped", error=f"upstream failed: {', '.join(sorted(bad))}")
                continue
            if not all(u in rows and rows[u].outcome not in ("failed", "skipped") for u in upstream):
                continue
            pending.remove(stage)
            gpu = free_gpus.pop(0) if free_gpus else None
            configured = run_stage.with_options(
                task_run_name=stage, retries=retries, retry_delay_seconds=retry_delay_seconds
            )
            future = runner.submit(
                configured,
                parameters={"stage": stage, "root": str(the_plan.root), "log_dir": log_dir,
                            "exchange": exchange, "gpu": gpu, "threads": threads_per_stage},
                wait_for=[futures[u] for u in upstream],  # already finished: recorded as edges in Prefect's UI
            )
            futures[stage] = future
            running[future] = (stage, gpu)
            submitted[stage] = time.time()
        if not running:
            break
        done = next(iter(as_completed(list(running))))
        stage, gpu = running.pop(done)
        if gpu is not None:
            free_gpus.append(gpu)
        value = done.result(raise_on_failure=False)  # waits for the final state (retries included)
        if isinstance(value, dict):
            rows[stage] = StageRun(**value)
        else:
            error = value
            attempts = retries + 1
            match = re.search(r"on attempt (\d+)", str(error))
            if match:
                attempts = int(match.group(1))
            now = time.time()
            rows[stage] = StageRun(stage, "failed", attempts=attempts, seconds=now - submitted[stage],
                                   started=submitted[stage], finished=now, error=str(error).splitlines()[0])
            logger.error("stage %s failed after %d attempt(s): %s", stage, attempts, error)
            if not keep_going:
                stop = True
    for stage in pending:
        rows.setdefault(stage, StageRun(stage, "not started", error="the run stopped after a failure"))
    return [rows[s] for s in the_plan.order]


def _collect(root: Path, targets: Sequence[str], log_dir: str, logger: Any) -> None:
    """Exchange mode: bring every output and ``dvc.lock`` entry into the orchestrator's clone from the remote."""
    cmd = [sys.executable, "-m", "mergeflow.dvc_cli", "--wait-for-lock", "repro", "--pull", *targets]
    log_path = _log_path(root, log_dir, "_collect")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log_file:
        returncode, _ = _stream(cmd, root, dict(os.environ, PYTHONUNBUFFERED="1"), log_file, logger, "collect")
    if returncode != 0:
        raise StageFailed(f"collecting the results into {root} failed (log: {log_path})")


def _markdown(summary: dict[str, Any]) -> str:
    """The run's stage table and, when the pipeline has one, the results table, as Prefect markdown."""
    lines = [f"# mergeflow pipeline: {summary['status']}", "",
             f"{len(summary['stages'])} of {summary['considered']} stages planned "
             f"(changed according to DVC: {', '.join(summary['changed']) or 'none'}); "
             f"wall time {summary['seconds']:.1f} s, at most {summary['max_concurrent']} at a time.", "",
             "| stage | outcome | attempts | seconds | threads | host |", "|---|---|---|---|---|---|"]
    for row in summary["stages"]:
        note = f" ({row['error']})" if row["error"] else ""
        lines.append(f"| `{row['stage']}` | {row['outcome']}{note} | {row['attempts']} | {row['seconds']:.1f} "
                     f"| {row['threads'] or 'env'} | {row['host']} |")
    csv_path = Path(summary["root"]) / RESULTS_CSV
    if csv_path.exists():
        with csv_path.open(newline="") as handle:
            table = list(csv.reader(handle))
        if table:
            header, body = table[0], table[1:]
            lines += ["", f"## {RESULTS_CSV}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(row) + " |" for row in body[:MAX_TABLE_ROWS]]
            if len(body) > MAX_TABLE_ROWS:
                lines.append(f"\n({len(body) - MAX_TABLE_ROWS} more rows in `{RESULTS_CSV}`)")
    return "\n".join(lines) + "\n"


@flow(name="mergeflow-pipeline", persist_result=False, log_prints=False)
def pipeline_flow(
    root: str = ".",
    targets: list[str] | None = None,
    max_concurrent: int | None = None,
    retries: int = 1,
    retry_delay_seconds: float = 10.0,
    keep_going: bool = False,
    exchange: bool = False,
    dask_address: str | None = None,
    log_dir: str = DEFAULT_LOG_DIR,
    gpus: list[str] | None = None,
    threads_per_stage: int | None = None,
    wait_for_workspace: bool = False,
) -> dict[str, Any] | State:
    """Reproduce the pipeline (or what ``targets`` need): changed stages and their descendants, concurrently.

    Threads: ``threads_per_stage`` for every stage when given; else, with several stages at once on this machine's
    thread pool and no ``OMP_NUM_THREADS`` set, this machine's cores divided by the limit; else the environment's
    (one stage at a time then runs exactly as under ``dvc repro``). One flow per workspace: while another holds it
    (``flows/workspace_lock.py``) the run fails at once with one line, or waits with ``wait_for_workspace``.
    """
    try:
        with exclusive_workspace(find_root(Path(root).resolve()), wait=wait_for_workspace):
            return _reproduce(root, list(targets or []), max_concurrent, retries, retry_delay_seconds, keep_going,
                              exchange, dask_address, log_dir, gpus, threads_per_stage)
    except (WorkspaceBusy, PlanError) as exc:
        return Failed(message=str(exc), data=PipelineFailed(str(exc)))


def _reproduce(root: str, targets: list[str], max_concurrent: int | None, retries: int, retry_delay_seconds: float,
               keep_going: bool, exchange: bool, dask_address: str | None, log_dir: str, gpus: list[str] | None,
               threads_per_stage: int | None) -> dict[str, Any] | State:
    """The flow's body, once the workspace is this run's."""
    from prefect.artifacts import create_markdown_artifact

    logger = get_run_logger()
    start = time.time()
    local_gpus = [] if dask_address else list(default_gpus() if gpus is None else gpus)
    limit = max_concurrent or max(len(local_gpus), 1)
    if threads_per_stage is None and limit > 1 and not dask_address and "OMP_NUM_THREADS" not in os.environ:
        threads_per_stage = stage_threads(local_cores(), limit)
    if reset_if_half_written(find_root(Path(root).resolve())):
        logger.warning("%s was left half-written by a killed dvc process; reset it to an empty lock table", RWLOCK)
    the_plan = plan(Path(root), targets, allow_missing=exchange)
    logger.info("DVC reports %d changed of %d stages; running %d (with their descendants): %s",
                len(the_plan.changed), the_plan.considered, len(the_plan.order), ", ".join(the_plan.order) or "none")
    rows: list[StageRun] = []
    durations_path = _log_folder(the_plan.root, log_dir) / DURATIONS_FILE
    durations, warning = load_durations(durations_path)
    if warning:
        logger.warning(warning)
    if not the_plan.empty:
        with _task_runner(limit, dask_address) as runner:
            rows = _dispatch(the_plan, runner, max_concurrent=limit, retries=retries,
                             retry_delay_seconds=retry_delay_seconds, keep_going=keep_going, exchange=exchange,
                             log_dir=log_dir, gpus=local_gpus, logger=logger,
                             threads_per_stage=threads_per_stage,
                             priority=path_lengths(the_plan.order, the_plan.upstream, durations))
        save_durations(durations_path, durations, {r.stage: r.seconds for r in rows if r.outcome == "ran"})
    failed = [r.stage for r in rows if r.outcome == "failed"]
    collect_error = ""
    if exchange and not failed and not the_plan.empty:
        try:
            _collect(the_plan.root, targets, log_dir, logger)
        except StageFailed as exc:
            collect_error = str(exc)
    summary = {
        "root": str(the_plan.root), "status": "failed" if failed or collect_error else "completed", "targets": targets,
        "changed": sorted(the_plan.changed), "considered": the_plan.considered, "max_concurrent": limit,
        "seconds": time.time() - start, "stages": [asdict(r) for r in rows],
    }
    create_markdown_artifact(markdown=_markdown(summary), key=ARTIFACT_KEY,
                             description="Stages of this run and the results table")
    if failed or collect_error:
        skipped = [r.stage for r in rows if r.outcome in ("skipped", "not started")]
        message = collect_error or f"stage(s) failed: {', '.join(failed)}" + (
            f"; not run because of it: {', '.join(skipped)}" if skipped else "")
        # A Failed state rather than a raise: the run fails with this one line, not a traceback of the flow body.
        return Failed(message=message, data=PipelineFailed(message, summary))
    return summary


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.pipeline",
        description=(
            "Reproduce the DVC pipeline as a Prefect flow. DVC decides which stages changed; the flow adds their "
            "descendants (dvc status shows first-level changes only) and runs each as `dvc --wait-for-lock repro "
            "--single-item STAGE` once its upstream stages finished, several at a time. Without PREFECT_API_URL, "
            "Prefect starts a temporary local API for the run (10-15 s); with a server (see flows/README.md) the "
            "run, its logs and a results artifact show in the UI. Parameters live in params.yaml, as for dvc repro."
        ),
    )
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help="stages to reproduce with everything upstream of them, as in `dvc repro TARGET` "
                             "(e.g. finetune@land_cover, or a foreach group such as finetune); default: every stage")
    parser.add_argument("--repo", default=".",
                        help="the DVC repository (or a folder inside it; default: the current directory)")
    parser.add_argument("-j", "--max-concurrent", type=int, default=None,
                        help="stages running at once (default: the number of visible GPUs, at least 1; "
                             "each concurrent stage gets its own CUDA_VISIBLE_DEVICES when GPUs are visible)")
    parser.add_argument("--threads-per-stage", type=int, default=None, metavar="N",
                        help="OMP/MKL threads of every stage (default: with -j above 1, OMP_NUM_THREADS unset and no "
                             "Dask, this machine's cores divided by --max-concurrent, at least 1, so -j 2 on 2 CPUs "
                             "gives 1 thread per stage; otherwise the environment's, as under dvc repro). Fixed for "
                             "the whole run: torch's results depend on the thread count")
    parser.add_argument("--retries", type=int, default=1,
                        help="retries of a failed stage before the run fails (default: 1)")
    parser.add_argument("--retry-delay", type=float, default=10.0, help="seconds between retries (default: 10)")
    parser.add_argument("-k", "--keep-going", action="store_true",
                        help="after a failure, still run every stage that does not depend on it (as dvc repro -k)")
    parser.add_argument("--dask-address", default=None, metavar="tcp://HOST:8786",
                        help="run the stage tasks on this existing Dask cluster (prefect-dask); use with "
                             "--exchange when its workers are other machines")
    parser.add_argument("--exchange", action="store_true",
                        help="one clone per worker, the default DVC remote as the artifact exchange: each stage runs "
                             f"`dvc repro --pull STAGE` in ${CLONE_ENV} (else --repo), then `dvc push --run-cache "
                             "STAGE`; at the end this clone collects everything with `dvc repro --pull`")
    parser.add_argument("--log-dir", default=DEFAULT_LOG_DIR,
                        help=f"per-stage logs, <stage>.log (default: {DEFAULT_LOG_DIR}, inside the clone that "
                             f"ran the stage), and {DURATIONS_FILE}, the stage times that decide which ready stage "
                             "starts first")
    parser.add_argument("--wait-for-workspace", action="store_true",
                        help="when another flow is running in this workspace, wait for it to finish and then run "
                             "(default: refuse at once with one line; two flows would write the same outputs)")
    parser.add_argument("--dry", action="store_true", help="print the plan (what would be submitted) and exit")
    return parser


def _print_table(rows: list[dict[str, Any]]) -> None:
    width = max([len(r["stage"]) for r in rows] + [5])
    print(f"{'stage':<{width}}  {'outcome':<24} attempts  seconds  threads")
    for r in rows:
        print(f"{r['stage']:<{width}}  {r['outcome']:<24} {r['attempts']:>8}  {r['seconds']:>7.1f}  "
              f"{r.get('threads') or 'env':>7}" + (f"  {r['error']}" if r["error"] else ""))


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the input with DVC before Prefect starts; a no-op (nothing changed) returns without a flow run."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.max_concurrent is not None and args.max_concurrent < 1:
        parser.error("--max-concurrent must be at least 1")
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    if args.threads_per_stage is not None and args.threads_per_stage < 1:
        parser.error("--threads-per-stage must be at least 1")
    try:
        root = find_root(Path(args.repo).resolve())
        if args.dry:
            return _print_plan(plan(root, args.targets, allow_missing=args.exchange))
        with exclusive_workspace(root, wait=args.wait_for_workspace):  # refused here, before Prefect's start-up
            return _run_flow(parser.prog, root, args)
    except (PlanError, WorkspaceBusy) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


def _print_plan(the_plan: Plan) -> int:
    """``--dry``, and a run with nothing to do: what would be submitted, in order, and why."""
    if the_plan.empty:
        print(f"nothing to run: every stage is up to date ({the_plan.considered} checked by DVC)")
    else:
        print(f"{len(the_plan.order)} of {the_plan.considered} stages would run, in this order:")
    for stage in the_plan.order:
        why = "changed" if stage in the_plan.changed else "downstream of a change"
        print(f"  {stage}  ({why}; after: {', '.join(sorted(the_plan.upstream[stage])) or '-'})")
    return 0


def _run_flow(prog: str, root: Path, args: argparse.Namespace) -> int:
    """Plan under the workspace lock (so the plan is not another flow's half-done state), then run the flow."""
    the_plan = plan(root, args.targets, allow_missing=args.exchange)
    if the_plan.empty:
        return _print_plan(the_plan)
    state = pipeline_flow(root=str(root), targets=list(args.targets), max_concurrent=args.max_concurrent,
                 retries=args.retries, retry_delay_seconds=args.retry_delay, keep_going=args.keep_going,
                 exchange=args.exchange, dask_address=args.dask_address, log_dir=args.log_dir,
                 threads_per_stage=args.threads_per_stage, wait_for_workspace=args.wait_for_workspace,
                 return_state=True)
    outcome = state.result(raise_on_failure=False)
    summary = outcome.summary if isinstance(outcome, PipelineFailed) else outcome
    if isinstance(summary, dict) and "stages" in summary:
        _print_table(summary["stages"])
        print(f"{summary['status']} in {summary['seconds']:.1f} s; per-stage logs in {args.log_dir}")
    if state.is_completed():
        return 0
    print(f"{prog}: error: {outcome}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
