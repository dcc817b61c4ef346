"""A signal that arrives while ExitOnInterrupt's own ``__enter__``/``__exit__`` run (outside the block's protection)
ends with the one line and 130/143, not a traceback: the race the random kills of test_interrupts.py hit now and then,
made deterministic by delivering the signal from inside those methods."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mergeflow import interrupts
from mergeflow.interrupts import ExitOnInterrupt

ROOT = Path(__file__).resolve().parents[1]
LINE = "mergeflow: test interrupted (SIGTERM); no partial file was left behind"


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter (its own signal handlers and exit status) with this checkout's library."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_signal_during_exit_is_the_blocks_interrupt(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real_signal = signal.signal
    delivered: list[bool] = []

    def restore_then_signal(signum: int, handler: object) -> object:
        # the first handler ExitOnInterrupt restores: a SIGTERM lands right there, inside __exit__
        if not delivered:
            delivered.append(True)
            guard._on_signal(signal.SIGTERM, sys._getframe(1))
        return real_signal(signum, handler)  # type: ignore[arg-type]

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        guard = ExitOnInterrupt("mergeflow: test")
        with guard:
            monkeypatch.setattr(interrupts.signal, "signal", restore_then_signal)
        monkeypatch.undo()
        assert delivered and guard.exit_code == 143
        assert capsys.readouterr().err.splitlines() == [LINE]
        assert signal.getsignal(signal.SIGTERM) == previous[signal.SIGTERM]  # the handlers are restored all the same
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def test_a_signal_during_enter_ends_at_once_with_one_line() -> None:
    script = """
import signal, sys
from mergeflow import interrupts
real = signal.signal
installed = []
def install_then_signal(signum, handler):
    previous = real(signum, handler)
    installed.append(signum)
    if len(installed) == 2:  # both handlers are in place, __enter__ has not returned: a SIGTERM lands here
        handler(signal.SIGTERM, sys._getframe(1))
    return previous
interrupts.signal.signal = install_then_signal
with interrupts.ExitOnInterrupt("mergeflow: test"):
    print("the block ran")
"""
    done = _run_script(script)
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (143, "", [LINE])


@pytest.mark.parametrize("leaving", [True, False])
def test_a_signal_after_a_leaving_block_changes_nothing(leaving: bool) -> None:
    """A command's block ends, then a stop signal arrives while the process prints its status and tears down: with
    ``leaving`` the process still exits with the work's status and prints nothing more; without it the previous
    (default) handler is back, and SIGTERM kills it silently, the failure the fresh-process kills once hit."""
    script = f"""
import os, signal
from mergeflow import interrupts
with interrupts.ExitOnInterrupt("mergeflow: test", leaving={leaving}):
    print("the block ran", flush=True)
os.kill(os.getpid(), signal.SIGTERM)
os.kill(os.getpid(), signal.SIGINT)
print("exiting")
"""
    done = _run_script(script)
    if leaving:
        assert (done.returncode, done.stdout.splitlines(), done.stderr) == (0, ["the block ran", "exiting"], "")
    else:
        assert (done.returncode, done.stdout.splitlines(), done.stderr) == (-signal.SIGTERM, ["the block ran"], "")


def test_the_program_ignores_a_stop_signal_once_its_command_is_done() -> None:
    """``mergeflow`` (cli.run) after its command: the SIGTERM a user sends as it finishes leaves the exit status 0."""
    script = """
import os, signal, sys
from mergeflow import cli
real_main = cli.main
def main_then_signal(leaving=False):
    code = real_main(["check-params", sys.argv[1]], leaving)
    os.kill(os.getpid(), signal.SIGTERM)
    return code
cli.main = main_then_signal
cli.run()
"""
    params = ROOT / "params.yaml"
    done = _run_script(script, str(params))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith(f"{params}: valid")
