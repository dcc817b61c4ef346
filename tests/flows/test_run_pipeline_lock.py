"""The README's run command and the Prefect flow share one workspace lock, so neither starts while the other runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from flows.workspace_lock import LOCK_FILE, exclusive_workspace

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run_pipeline.sh"


def test_the_run_command_takes_the_flows_lock_file() -> None:
    assert f"{LOCK_FILE}" in SCRIPT.read_text(), "scripts/run_pipeline.sh must flock the file flows/workspace_lock.py uses"


def test_the_run_command_refuses_with_one_line_while_a_flow_holds_the_workspace() -> None:
    with exclusive_workspace(ROOT):
        # --dry: were the lock not honoured, dvc would only print its plan (nothing runs, nothing is written)
        done = subprocess.run(["bash", str(SCRIPT), "--dry"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"run_pipeline.sh: a pipeline run is already going in {ROOT}"), errors
    assert f"pid {os.getpid()}" in errors[0]
    assert "Running stage" not in done.stdout and "dvc repro" not in done.stdout
