"""Chaos on the pipeline (issue 18 item 5): a cold run of the smoke profile killed with SIGKILL at seeded random
points, some kills of ``dvc repro``, some of the Prefect flow, each run resumed by the other tool or the same one;
the last resume runs uninterrupted. ``dvc repro`` runs as ``scripts/run_pipeline.sh`` runs it, through
``mergeflow.dvc_cli`` (which the flow uses too): DVC rewrites ``dvc.lock`` and its stage lock table in place, and a kill
during one of those writes left a cut ``dvc.lock`` or an empty table that stopped every later run, which this test
hit once warm stage processes made the stages short. The points are spread over the whole run: the seed draws which
stages (by the order they start in) a kill follows, and a delay of up to a few seconds after that stage started, so
kills land in early data preparation, in training, in merges and in the last reports alike, each run making progress. It must end where an uninterrupted cold run ends: the same dvc.lock (every
cached output's hash, every dependency and parameter) and the same metrics, ``dvc status`` clean, no temp file left.
Once, while a flow runs, a second flow is started in the same workspace: it refuses with one line.

A kill takes the whole process group, as a job scheduler or the OOM killer of a cgroup would: DVC and the stage it
runs die together (a stage orphaned by its dead ``dvc repro`` would go on writing; a stage served by the warm stage
server, mergeflow.stage_server, is killed by the server when its client dies). This is also the second of the
two cold runs on two copies whose cached outputs must be byte-identical (issue 18 item 6): the reference is the
session's shared uninterrupted run (pipeline_kit.shared_cold_run), which tests/test_pipeline.py builds at the same
time on the other worker.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pipeline_kit import (
    copy_project,
    kill_group,
    locked_outputs,
    output_files,
    project_env,
    run,
    shared_cold_run,
    stale_stages,
    start,
    uncached_outputs,
)

from flows.workspace_lock import LOCK_FILE

pytestmark = pytest.mark.pipeline

SEED = 185
TOOLS = ("dvc",) * 6 + ("flow",) * 4  # ten kills in all
DELAY_S = (0.0, 4.0)  # after the chosen stage started (uniform): inside it, or in the one after it
STARTED = re.compile(r"Running stage '([^']+)'")


def _command(tool: str, project: Path) -> list[str]:
    if tool == "dvc":  # as scripts/run_pipeline.sh runs DVC (its state files written atomically: src/mergeflow/dvc_cli.py)
        return ["bash", "-c", '"$0" -m mergeflow.dvc_rwlock && exec "$0" -m mergeflow.dvc_cli repro', sys.executable]
    return [sys.executable, "-m", "flows.pipeline", "--repo", str(project), "-j", "2", "--retries", "0"]


def _lock_holder(project: Path) -> str:
    path = project / LOCK_FILE
    return path.read_text() if path.exists() else ""


def _second_flow_refuses(project: Path, first: subprocess.Popen, env: dict[str, str]) -> bool:
    """While ``first`` (a flow) holds the workspace, another flow there exits 2 with one line; False when ``first``
    ended before it took the lock."""
    while f"pid {first.pid}," not in _lock_holder(project):
        if first.poll() is not None:
            return False
        time.sleep(0.05)
    second = subprocess.run(_command("flow", project), cwd=project, env=env, capture_output=True, text=True, timeout=120)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr[-3000:]
    assert lines[0].startswith(f"python -m flows.pipeline: error: another pipeline flow is running in {project} "
                               f"(pid {first.pid}, started "), lines
    return True


def _started(logs: Path) -> set[str]:
    """Stages some run has started so far (a killed stage, started again, counts once)."""
    return {name for log in logs.glob("*.log") for name in STARTED.findall(log.read_text(errors="replace"))}


def _temps(project: Path) -> list[Path]:
    """Temp files of the stages' writes and of DVC's own (dvc.lock, the stage lock table: src/mergeflow/dvc_cli.py)."""
    ours = [path for folder in ("artifacts", "reports") for path in (project / folder).rglob(".*.tmp")]
    return ours + list(project.glob(".dvc.lock.*.tmp")) + list((project / ".dvc" / "tmp").glob(".rwlock.*.tmp"))


def test_kill_9_of_dvc_repro_and_the_flow_then_resume_to_the_uninterrupted_run(
        prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    project = copy_project(tmp_path_factory.mktemp("chaos") / "project", "smoke.yaml")
    env = project_env(project)  # the session's Prefect server comes with os.environ (PREFECT_API_URL)
    rng = random.Random(SEED)
    tools = list(TOOLS)
    rng.shuffle(tools)
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        stages = len(list(repo.index.stages))
    after = sorted(rng.sample(range(1, stages), len(tools)))  # kill k once this many stages have started
    logs = tmp_path_factory.mktemp("chaos-logs")
    landed: list[str] = []
    refused = False
    for attempt, (tool, count) in enumerate(zip(tools, after, strict=True)):
        log = logs / f"{attempt:02d}-{tool}.log"
        proc = start(_command(tool, project), log, env, cwd=project)
        if tool == "flow" and not refused:
            refused = _second_flow_refuses(project, proc, env)
        while proc.poll() is None and len(_started(logs)) < count:
            time.sleep(0.1)
        deadline = time.monotonic() + rng.uniform(*DELAY_S)
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            kill_group(proc)
            landed.append(f"{tool} after {count} of {stages} stages")
        else:
            assert proc.returncode == 0, log.read_text()[-3000:]
        if (project / "dvc.lock").exists():  # never half-written: it parses, and names only real stages
            assert isinstance(yaml.safe_load((project / "dvc.lock").read_text())["stages"], dict)
    print(f"kills that landed: {len(landed)} ({', '.join(landed)})")
    assert len(landed) >= 10 and refused, (landed, refused)
    run(_command("dvc", project), project, env)  # the last resume, uninterrupted
    assert stale_stages(project) == set()
    assert not _temps(project), _temps(project)

    reference, _ = shared_cold_run(tmp_path_factory)
    ours, theirs = yaml.safe_load((project / "dvc.lock").read_text()), yaml.safe_load((reference / "dvc.lock").read_text())
    uncached = uncached_outputs(project)
    timings = {path for path in uncached if path.startswith("reports/timings/")}
    report = {"reports/report.md", "reports/figures"}  # the report's cost tables show this run's timings
    assert timings and report <= uncached

    def _wall_clock(path: str) -> bool:  # a timing file, the folder of them (the report's dependency), the report
        return path in timings | report or path == "reports/timings"

    def without_wall_clock(lock: dict) -> dict:
        """dvc.lock without the entries of the timing files and the report (as outputs and as dependencies)."""
        return {name: {key: [entry for entry in value if not _wall_clock(entry["path"])] if key in ("deps", "outs")
                       else value for key, value in stage.items()} for name, stage in lock["stages"].items()}

    assert ours.keys() == theirs.keys() and locked_outputs(project).keys() == locked_outputs(reference).keys()
    differ = [name for name, stage in without_wall_clock(ours).items() if stage != without_wall_clock(theirs)[name]]
    assert not differ, f"dvc.lock differs from the uninterrupted run's at {differ}"
    # byte for byte, every output but the timings and the report: the cached ones and the uncached tables alike
    ours_out = locked_outputs(project)
    assert {"reports/results.parquet", "reports/adaptation", "reports/parts/static"} <= ours_out.keys() - uncached
    for output in sorted(ours_out.keys() - timings - report):
        assert output_files(project, output) == output_files(reference, output), output
    assert (project / "reports" / "metrics.json").read_bytes() == (reference / "reports" / "metrics.json").read_bytes()
    assert any(output_files(project, path) != output_files(reference, path) for path in timings)  # wall clock differs
