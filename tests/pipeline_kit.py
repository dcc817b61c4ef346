"""What every test of the real pipeline shares: a scratch copy of the project with a profile as params.yaml, the dvc
CLI run against that copy's library and stages, the set of stages a DVC run executed, one cold run of the smoke
profile per test session (shared across pytest-xdist workers), what dvc.lock records, and background processes that
are always stopped by the PID the test started (never by name)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from mergeflow.profiles import write_profile

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# One intra-op thread per stage: reductions then do not depend on how busy the machine is, and two concurrent stages
# use one core each on a 2-core machine.
STAGE_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
GIT = ["git", "-c", "user.name=mergeflow-tests", "-c", "user.email=tests@mergeflow.invalid",
       "-c", "init.defaultBranch=main"]


def project_env(project: Path, **extra: str) -> dict[str, str]:
    """Subprocess environment: the copied library and stages (not the installed ones), then this checkout's flows."""
    env = dict(os.environ, **STAGE_ENV)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(project / "src"), str(project), str(ROOT)])
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env or project_env(cwd), capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, f"{cmd} -> {proc.returncode}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc


def dvc(project: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = run([sys.executable, "-m", "dvc", *args], project, env or project_env(project))
    return proc.stdout + proc.stderr


def ran(output: str) -> set[str]:
    """Stages whose command DVC ran (not skipped, not restored from the run cache)."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def copy_project(dest: Path, profile: str = "smoke.yaml", init: bool = True) -> Path:
    """The real pipeline (dvc.yaml, tasks/, src/) with ``profiles/<profile>`` as params.yaml (an overlay resolved), as a
    DVC repo (no git)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in ("dvc.yaml", "pyproject.toml", ".dvcignore"):
        if (ROOT / item).exists():
            shutil.copy(ROOT / item, dest / item)
    for folder in ("tasks", "src"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_profile(ROOT / "profiles" / profile, dest / "params.yaml")
    if init and not (dest / ".dvc").exists():
        dvc(dest, "init", "--no-scm", "-q")
    return dest


def git_project(dest: Path, profile: str = "smoke.yaml") -> Path:
    """copy_project as a git repository with DVC inside it (what a team shares, commits and clones)."""
    copy_project(dest, profile, init=False)
    run([*GIT, "init", "-q"], dest)
    dvc(dest, "init", "-q")
    return dest


def commit(repo: Path, message: str) -> None:
    run([*GIT, "add", "-A"], repo)
    run([*GIT, "commit", "-q", "-m", message], repo)


def clone(source: Path, dest: Path) -> Path:
    run([*GIT, "clone", "-q", str(source), str(dest)], source.parent)
    return dest


def shared_cold_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One uninterrupted cold ``dvc repro`` of the smoke profile (a git repository) per test session, and what it
    printed. Several files need one (the incremental pipeline tests, the S3 teammate, the chaos run's reference), a
    cold run costs minutes of CI, so the first caller builds it under a file lock in the folder every xdist worker of
    this session shares, and the others wait for it. Callers copy it (:func:`copy_of`), never change it."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, log, done = shared / "smoke-cold-run", shared / "smoke-cold-run.log", shared / "smoke-cold-run.done"
    with FileLock(str(shared / "smoke-cold-run.lock")):
        if not done.exists():
            if folder.exists():  # an earlier caller's run failed (its test failed with it): start again
                shutil.rmtree(folder)
            git_project(folder)
            log.write_text(dvc(folder, "repro"))
            done.touch()
    return folder, log.read_text()


def copy_of(project: Path, dest: Path) -> Path:
    """A working copy of a pipeline project, its DVC cache included (DVC's own state in .dvc/tmp is rebuilt)."""
    shutil.copytree(project, dest, symlinks=True, ignore=lambda folder, names: ["tmp"] if folder.endswith("/.dvc") else [])
    return dest


def locked_outputs(workdir: Path) -> dict[str, str]:
    """Every output's hash as dvc.lock records it (path -> md5; a folder's is the hash of its listing)."""
    stages = yaml.safe_load((workdir / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", [])}


def uncached_outputs(workdir: Path) -> set[str]:
    """The outputs dvc.yaml declares ``cache: false`` (as DVC resolves the foreach items)."""
    from dvc.repo import Repo

    with Repo(str(workdir)) as repo:
        return {str(out.def_path) for stage in repo.index.stages for out in stage.outs if not out.use_cache}


def output_files(workdir: Path, output: str) -> dict[str, bytes]:
    """An output's bytes, file by file (a folder's files under their relative names)."""
    path = workdir / output
    if path.is_file():
        return {output: path.read_bytes()}
    return {str(file.relative_to(workdir)): file.read_bytes() for file in sorted(path.rglob("*")) if file.is_file()}


def stale_stages(workdir: Path) -> set[str]:
    """Stages `dvc status` reports as changed (its unindented ``name:`` lines)."""
    return set(re.findall(r"^(\S+):$", dvc(workdir, "status"), flags=re.MULTILINE))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(cmd: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """Start a background process in its own process group, so that stop() ends it and any children it forked."""
    handle = log.open("w")
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM to the process group led by this PID, then SIGKILL if it has not exited after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        pass


def _group_members(pgid: int) -> list[int]:
    """Processes (zombies included) still in process group ``pgid``, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue  # gone while we looked
        if int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def kill_group(proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """SIGKILL to the process group led by this PID, then wait until every process of it has been reaped. DVC takes a
    pid that still exists (a zombie its new parent, init, has not reaped yet) for a live writer and refuses the stage as
    busy; on this VM's init that takes a few seconds, so a resume started at once would fail for a reason that is not
    the pipeline's."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + timeout
    while (members := _group_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not members, f"processes of the killed group {proc.pid} still there after {timeout} s: {members}"


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> float:
    """Seconds until ``url`` answers 200; fails with the log's tail if the process exits or time runs out."""
    start_time = time.monotonic()
    while time.monotonic() - start_time < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - start_time
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")
