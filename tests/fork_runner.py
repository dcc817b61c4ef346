"""Run `mergeflow ...` or `python -m tasks.<stage> ...` many times without paying torch's import each time.

Why: the interrupt tests kill a few dozen commands; a fresh interpreter costs ~2 s of imports each, the merge itself
a fraction of a second. This process imports torch and the command modules once, then forks one child per request
(a fresh process with its own pid, signals and exit status, running the module as ``python -m`` would) and reports
the child's pid, then its exit status (negative: the signal that killed it). It stays single-threaded, so forking is
safe. Requests, one JSON line each on stdin: ``[cwd, module, argv, log path]``; the child's stderr goes to the log
file, its stdout to the log's path + ``.out``. SIGINT/SIGTERM are blocked from before the fork until the child has
installed the handlers a command installs first, so a signal sent as soon as the pid is known meets the command
(under load a child can wait tens of ms before it runs at all). Not a product hook: nothing in mergeflow knows
about it.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import signal
import sys

from mergeflow.interrupts import exit_while_starting

# what the commands import, but not the commands' own modules (runpy warns when it re-runs an imported module)
PRELOAD = ("torch", "mergeflow.merging.streaming", "mergeflow.merging.registry", "mergeflow.cli_adapt", "mergeflow.cli_route",
           "mergeflow.cli_convert", "tasks._stage", "mergeflow.data.suites", "mergeflow.data.image_table",
           "mergeflow.data.text_table", "mergeflow.statedict.io")
STOPPING = {signal.SIGINT, signal.SIGTERM}


def _child(cwd: str, module: str, argv: list[str], log: str) -> None:
    """In the forked child: the module run as ``__main__`` with ``argv``, its exit status as the process's."""
    for stream, path in ((1, f"{log}.out"), (2, log)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), stream)
    code = 1
    try:
        # what the command does first (tasks/__init__.py under ``python -m``, mergeflow.cli.run), then the signals
        # the parent held back since the fork are let in: a kill sent at once meets the command, not the runner
        exit_while_starting("mergeflow: stage" if module.startswith("tasks.") else "mergeflow:")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
        os.chdir(cwd)
        sys.argv = [module, *argv]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # what an uncaught exception would print, then exit 1
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    print("ready", flush=True)
    for line in sys.stdin:
        cwd, module, argv, log = json.loads(line)
        signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)  # until the child has its handlers (it unblocks them)
        pid = os.fork()
        if pid == 0:
            _child(cwd, module, argv, log)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)  # reaped before the next request: a killed child's pid is then free
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    main()
