"""The warm stage server (mergeflow.stage_server): a served ``python -m`` behaves as a plain one to its caller.

A probe package in a temp folder hooks in exactly as tasks/__init__.py does; its module reports what it sees. Each
test gets its own socket folder (XDG_RUNTIME_DIR) and a short idle time, so its servers are its own and leave soon.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PROBE_INIT = """
import sys
if sys.argv[:1] == ["-m"]:
    from mergeflow.stage_server import run_stage_in_server
    run_stage_in_server()
"""

PROBE_MAIN = """
import json, os, signal, sys, time
warm = "torch" in sys.modules  # a served child has the server's imports; a plain process has none yet
print(json.dumps({"warm": warm, "server": os.getppid(), "cwd": os.getcwd(), "argv": sys.argv[1:],
                  "stage": os.environ.get("DVC_STAGE"), "colour": os.environ.get("PROBE_COLOUR"),
                  "stdout_tty": sys.stdout.isatty()}), flush=True)
print("to stderr", file=sys.stderr)
action = sys.argv[1]
if action == "exit":
    sys.exit(int(sys.argv[2]))
if action == "raise":
    raise ValueError("the probe failed")
if action == "die":
    os.kill(os.getpid(), signal.SIGKILL)
if action == "wait":
    with open(sys.argv[2], "w") as marker:
        marker.write(str(os.getpid()))
    time.sleep(60)
"""


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    package = tmp_path / "probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(PROBE_INIT)
    (package / "main.py").write_text(PROBE_MAIN)
    runtime = Path(tempfile.mkdtemp(prefix="mfss", dir="/tmp"))  # short: a socket path has at most 107 bytes
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "MERGEFLOW_STAGE_SERVER_IDLE": "5", "PROBE_COLOUR": "red"}
    env.pop("MERGEFLOW_STAGE_SERVER", None)
    yield tmp_path, env
    shutil.rmtree(runtime, ignore_errors=True)  # its servers, unreachable now, leave once idle for 5 s


def _run(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe_pkg.main", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=120)


def _report(done: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(done.stdout.splitlines()[0])


def test_a_served_run_equals_a_plain_one_to_its_caller(probe: tuple[Path, dict[str, str]]) -> None:
    project, env = probe
    plain = _run(project, {**env, "MERGEFLOW_STAGE_SERVER": "0"}, "exit", "7")
    served = _run(project, env, "exit", "7")
    assert (plain.returncode, served.returncode) == (7, 7)
    assert not _report(plain)["warm"] and _report(served)["warm"]
    for key in ("cwd", "argv", "colour", "stdout_tty"):
        assert _report(plain)[key] == _report(served)[key], key
    assert plain.stderr == served.stderr == "to stderr\n"
    failed = _run(project, env, "raise")
    assert failed.returncode == 1 and failed.stderr.rstrip().endswith("ValueError: the probe failed"), failed.stderr


def test_one_server_serves_every_stage_with_its_own_environment(probe: tuple[Path, dict[str, str]]) -> None:
    project, env = probe
    first = _report(_run(project, {**env, "DVC_STAGE": "merge@ties"}, "exit", "0"))
    second = _report(_run(project, {**env, "DVC_STAGE": "merge@emr"}, "exit", "0"))
    assert first["warm"] and second["warm"] and first["server"] == second["server"]
    assert (first["stage"], second["stage"]) == ("merge@ties", "merge@emr")
    # an environment variable a library could read at import is part of the server's key: another server
    other = _report(_run(project, {**env, "PROBE_COLOUR": "blue"}, "exit", "0"))
    assert other["warm"] and other["server"] != first["server"] and other["colour"] == "blue"


def test_a_stage_killed_by_a_signal_kills_its_client_with_it(probe: tuple[Path, dict[str, str]]) -> None:
    project, env = probe
    assert _run(project, env, "die").returncode == -signal.SIGKILL


def _wait_for(marker: Path) -> int:
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < deadline, "the probe never started"
        time.sleep(0.05)
    return int(marker.read_text())


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_reaches_the_stage_and_kill_9_of_the_client_ends_it(probe: tuple[Path, dict[str, str]]) -> None:
    project, env = probe
    for stop in (signal.SIGTERM, signal.SIGKILL):
        marker = project / f"pid-{stop.name}"
        client = subprocess.Popen([sys.executable, "-m", "probe_pkg.main", "wait", str(marker)], cwd=project, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stage = _wait_for(marker)
        assert stage != client.pid  # served: the stage is the server's child, not the client
        client.send_signal(stop)
        _, stderr = client.communicate(timeout=60)
        if stop == signal.SIGTERM:  # forwarded; the stage ends with the one line a starting stage prints
            assert client.returncode == 143, stderr
            assert stderr.splitlines()[-1] == ("mergeflow: stage interrupted (SIGTERM) while starting; no partial file "
                                               "was left behind"), stderr
        assert _gone(stage), f"the stage (pid {stage}) outlived its client killed by {stop.name}"
