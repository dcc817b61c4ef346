"""Wall time of the pipeline under plain `dvc repro` vs under the Prefect flow with concurrent stages.

Not a test. Each mode gets its own fresh scratch copy of the project (dvc.yaml, tasks/, src/, the chosen params
file as params.yaml, `dvc init --no-scm`), so both start cold, as the tests' copies do:

    repro  `dvc repro [TARGET ...]`, then a second `dvc repro` (the no-op)
    flow   `python -m flows.pipeline -j N [TARGET ...]`, then the same command again (the no-op: DVC reports
           nothing changed, so it returns without starting a flow run)

and prints one row per mode: stages run, cold wall seconds, no-op wall seconds. The flow talks to a Prefect server
this script starts on 127.0.0.1 first (not timed; stopped by its PID at the end), or to PREFECT_API_URL when set,
so the flow's time is not inflated by Prefect's temporary per-process API (10-15 s). Run it on a quiet machine:
the two modes run one after the other, so load that comes and goes skews the comparison.

Examples::

    nice -n 5 python benchmarks/flow_bench.py                                # smoke profile, 2 concurrent stages
    python benchmarks/flow_bench.py --params params.yaml                     # the default pipeline (~30 min each)
    python benchmarks/flow_bench.py --targets finetune --max-concurrent 2    # only what the experts need
    python benchmarks/flow_bench.py --threads-per-stage 1                    # OMP/MKL threads of every stage
    python benchmarks/flow_bench.py --params params.yaml --flow-threads 1    # one thread per stage in the flow
    python benchmarks/flow_bench.py --params params.yaml --modes flow        # the flow only (e.g. after a change)
    python benchmarks/flow_bench.py --modes flow --history DIR/flow/.dvc/tmp/flow_logs/stage_seconds.json
                                        # the flow's start order from an earlier run's stage times (flows/priority.py)

Threads: `dvc repro` stages use torch's default (every core) unless --threads-per-stage is given; the flow gives
every stage the cores divided by -j (its default) unless --flow-threads or --threads-per-stage is given.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
from flows.pipeline import DEFAULT_LOG_DIR  # noqa: E402  (after the path set-up above)
from flows.priority import DURATIONS_FILE  # noqa: E402
from mergeflow.profiles import write_profile  # noqa: E402


def _copy(dest: Path, params: Path) -> Path:
    dest.mkdir(parents=True)
    for item in ("dvc.yaml", ".dvcignore", "pyproject.toml"):
        shutil.copy(ROOT / item, dest / item)
    for folder in ("tasks", "src"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_profile(params, dest / "params.yaml")  # a whole params file as it is, an overlay profile resolved
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=dest, check=True)
    return dest


def _env(project: Path, threads: int | None, api_url: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED="0", PREFECT_API_URL=api_url, PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(project / "src"), str(project), str(ROOT)])
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def _timed(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout + proc.stderr


def _start_server(home: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    _stop(proc)
    raise SystemExit(f"the Prefect server did not start; see {home / 'server.log'}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group led by the PID this script started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "profiles" / "smoke.yaml",
                        help="params file or profile written as params.yaml (default: profiles/smoke.yaml; params.yaml is the "
                             "default pipeline)")
    parser.add_argument("--targets", nargs="*", default=[], help="stages to reproduce (default: all)")
    parser.add_argument("-j", "--max-concurrent", type=int, default=2, help="stages at once in the flow (default: 2)")
    parser.add_argument("--threads-per-stage", type=int, default=None,
                        help="OMP_NUM_THREADS/MKL_NUM_THREADS of every stage in both modes (default: unset)")
    parser.add_argument("--flow-threads", type=int, default=None,
                        help="the flow's --threads-per-stage, overriding --threads-per-stage there (default: the "
                             "flow's own, the cores divided by -j)")
    parser.add_argument("--modes", nargs="+", choices=("repro", "flow"), default=["repro", "flow"],
                        help="which modes to time (default: both)")
    parser.add_argument("--history", type=Path, default=None,
                        help="stage_seconds.json of an earlier flow run, put in the flow copy before its cold run, so "
                             "that longest-chain-first ordering has durations (default: none, DVC's order)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies and logs")
    args = parser.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="mergeflow-flow-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    server = None
    api_url = os.environ.get("PREFECT_API_URL", "")
    if not api_url:
        (work / "prefect-home").mkdir(exist_ok=True)
        server, api_url = _start_server(work / "prefect-home")
    rows = []
    flow_threads = args.flow_threads or args.threads_per_stage
    try:
        if "repro" in args.modes:
            repro = _copy(work / "repro", args.params)
            env = _env(repro, args.threads_per_stage, api_url)
            cmd = [sys.executable, "-m", "dvc", "repro", *args.targets]
            cold, out = _timed(cmd, repro, env, work / "repro-cold.log")
            noop, again = _timed(cmd, repro, env, work / "repro-noop.log")
            rows.append(("dvc repro", len(re.findall(r"Running stage '", out)), cold, noop,
                         len(re.findall(r"Running stage '", again))))
        if "flow" in args.modes:
            flow = _copy(work / "flow", args.params)
            if args.history:
                (flow / DEFAULT_LOG_DIR).mkdir(parents=True, exist_ok=True)
                shutil.copy(args.history, flow / DEFAULT_LOG_DIR / DURATIONS_FILE)
            env = _env(flow, None, api_url)
            threads = ["--threads-per-stage", str(flow_threads)] if flow_threads else []
            cmd = [sys.executable, "-m", "flows.pipeline", "--repo", str(flow), "-j", str(args.max_concurrent),
                   *threads, *args.targets]
            cold, out = _timed(cmd, ROOT, env, work / "flow-cold.log")
            noop, again = _timed(cmd, ROOT, env, work / "flow-noop.log")
            rows.append((f"flow -j {args.max_concurrent}", len(re.findall(r"^\S+\s+ran\s", out, re.MULTILINE)),
                         cold, noop, len(re.findall(r"^\S+\s+ran\s", again, re.MULTILINE))))
    finally:
        if server is not None:
            _stop(server)
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"{args.params.name}, targets: {' '.join(args.targets) or 'all'}, {os.cpu_count()} CPUs, "
          f"threads per stage: {args.threads_per_stage or 'torch default'} in dvc repro, "
          f"{flow_threads or 'the flow default (cores / -j)'} in the flow")
    print(f"{'mode':<12} {'stages run':>10} {'cold wall s':>12} {'no-op wall s':>13} {'no-op stages':>13}")
    for mode, stages, cold, noop, noop_stages in rows:
        print(f"{mode:<12} {stages:>10} {cold:>12.1f} {noop:>13.1f} {noop_stages:>13}")
    if len(rows) == 2:
        print(f"flow / repro cold wall: {rows[1][2] / rows[0][2]:.2f}")
    if args.keep or args.dir is not None:
        print(f"scratch copies and logs: {work}")


if __name__ == "__main__":
    main()
