"""What every test of the real pipeline shares: a scratch copy of the project with a profile as params.yaml, the dvc
CLI run against that copy's library and stages, and the set of stages a DVC run executed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

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
