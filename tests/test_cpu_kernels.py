"""A stage process pins MKL's code path (tasks/__init__.py says why: the same bits on any x86 CPU), unless the user's
environment names one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = "import os, sys; sys.argv = ['-m']; import tasks; print(os.environ.get('MKL_CBWR'))"


def _probe(**env: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "MKL_CBWR"} | env
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_stage_process_pins_mkl_to_its_avx2_path() -> None:
    assert _probe() == "AVX2"


def test_the_users_own_choice_wins() -> None:
    assert _probe(MKL_CBWR="AUTO") == "AUTO"
