"""A warm process that has already imported torch and open_clip, which forks one child per pipeline stage.

Why: every DVC stage is its own ``python -m tasks.<stage>`` process, and each spent 4-6 s importing torch, open_clip
(torchvision, part of transformers), pandas and pyarrow before doing anything: about a fifth of a cold default run.
With this module, ``python -m tasks.<stage>`` (the command in dvc.yaml, unchanged) starts as a small client instead:
it hands its argv, working directory, environment and its stdin/stdout/stderr descriptors to a server over a Unix
socket; the server forks, and the child runs the stage exactly as ``python -m`` would, with the libraries already in
memory. The client forwards SIGINT/SIGTERM/SIGHUP to the child and leaves with the child's exit status (or dies of
the same signal), so DVC, the Prefect flow and a shell see what they saw before.

What keeps a child equal to a fresh process:
- Servers are keyed by everything fixed when an interpreter starts: the executable and prefix, ``sys.path`` (bar the
  working directory), interpreter flags and -X/-W options, the environment (bar names that change per stage and are
  read by no library at import: ``DVC_*``, ``PWD``, ...), the resource limits, and this file's own bytes. A client
  whose key differs starts its own server; nothing is ever served by a process started differently.
- The server imports only third-party libraries, never the project: each child drops every ``mergeflow``/``tasks``
  module it inherited and imports the project's code from disk, so an edit between two stages is seen by the next.
- The server runs no torch operation (no thread pool exists to fork); each child seeds and sets its threads as any
  stage does. ``random`` reseeds itself in a forked child; ``tempfile`` too.

Ask for a plain process with ``MERGEFLOW_STAGE_SERVER=0``. A server leaves after ``MERGEFLOW_STAGE_SERVER_IDLE``
seconds (default 120) without a stage; its log is beside its socket in ``$XDG_RUNTIME_DIR`` (or the temp folder)
under ``mergeflow-stages-<uid>/``. Only Linux (``os.pidfd_open``); elsewhere every stage is a plain process.
"""

from __future__ import annotations

import array
import fcntl
import hashlib
import importlib
import io
import json
import os
import resource
import selectors
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SWITCH = "MERGEFLOW_STAGE_SERVER"
IDLE = "MERGEFLOW_STAGE_SERVER_IDLE"
# Imported once by the server: what nearly every stage imports, and what costs seconds. Optional ones may be absent.
PRELOADED = ("numpy", "torch", "safetensors.torch", "yaml", "pyarrow", "pyarrow.parquet", "pandas", "open_clip")
# Environment names that differ between stages or shells and that no library reads at import.
_VOLATILE_ENV_PREFIXES = ("DVC_", "PREFECT_")
_VOLATILE_ENV = {"PWD", "OLDPWD", "SHLVL", "_", "PYTEST_CURRENT_TEST", "COLUMNS", "LINES", "TERM_SESSION_ID"}
_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PROJECT_PACKAGES = ("mergeflow", "tasks")
_MAX_REQUEST = 1 << 24
_CONNECT_WAIT_S = 60.0  # a new server binds its socket at once, then imports (seconds) before it accepts


def _enabled() -> bool:
    return os.environ.get(SWITCH, "1") != "0" and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")


def _server_key() -> str:
    """What a server and its client must share for a forked child to equal a fresh ``python -m`` process."""
    env = {name: value for name, value in os.environ.items()
           if name not in _VOLATILE_ENV and not name.startswith(_VOLATILE_ENV_PREFIXES)}
    limits = {name: resource.getrlimit(getattr(resource, name)) for name in dir(resource) if name.startswith("RLIMIT_")}
    identity = {
        "executable": sys.executable, "prefix": sys.prefix, "version": sys.version, "path": sys.path[1:],
        "flags": list(sys.flags), "xoptions": sorted(map(str, sys._xoptions.items())), "warnoptions": sys.warnoptions,
        "env": sorted(env.items()), "limits": limits, "umask": _umask(),
        "server": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _umask() -> int:
    # not shared with mergeflow.dvc_cli: this module stays stdlib-only, so that the client starts in a tenth of a second
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _socket_dir() -> Path:
    """A folder only this user can use: a socket there receives our descriptors and environment."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    folder = base / f"mergeflow-stages-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise OSError(f"{folder} is not a private folder of this user")
    return folder


# ---------------------------------------------------------------------------------------------------------- client


def run_stage_in_server() -> None:
    """Called while ``python -m <module> args`` imports the module's package: run it in a warm child instead and
    leave with its exit status; return (having done nothing) when no server can be used, so the caller goes on as a
    plain process."""
    command = getattr(sys, "orig_argv", [])
    if not _enabled() or "-m" not in command[1:-1]:
        return
    module, args = command[command.index("-m") + 1], command[command.index("-m") + 2:]
    try:
        folder = _socket_dir()
        key = _server_key()
        sock = _connect(folder, key)
    except OSError:
        return
    with sock:
        request = json.dumps({
            "module": module, "args": args, "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path,
            "orig_argv": getattr(sys, "orig_argv", []), "umask": _umask(),
        }).encode()
        pending: list[int] = []
        child: list[int] = []

        def forward(signum: int, _frame: Any) -> None:
            if not child:
                pending.append(signum)
                return
            try:
                os.kill(child[0], signum)
            except ProcessLookupError:  # the stage has ended; its status is on its way
                pass

        previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED_SIGNALS}
        try:
            socket.send_fds(sock, [len(request).to_bytes(8, "big") + request], [0, 1, 2])
            reader = sock.makefile("r", encoding="utf-8")
            first = reader.readline().split()
        except OSError:
            first = []
        if len(first) != 2 or first[0] != "pid":  # the server left before starting the stage: run it here
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            return
        child.append(int(first[1]))
        for waiting in pending:
            forward(waiting, None)
        try:
            last = reader.readline().split()
        except OSError:
            last = []
    if len(last) == 2 and last[0] == "exit":
        _leave(int(last[1]))
    if len(last) == 2 and last[0] == "signal":
        died_of = int(last[1])
        if died_of not in (signal.SIGKILL, signal.SIGSTOP):  # the two whose handling cannot be set (or changed)
            signal.signal(died_of, signal.SIG_DFL)
        _flush()
        os.kill(os.getpid(), died_of)
        _leave(128 + died_of)
    os.write(2, f"mergeflow: the warm stage server ended while {module} ran; its log is in {folder}\n".encode())
    _leave(1)


def _leave(code: int) -> None:
    _flush()
    os._exit(code)


def _connect(folder: Path, key: str) -> socket.socket:
    """Connect to the server for ``key``, starting it (once, under a lock) when none answers."""
    path = folder / f"{key}.sock"
    try:
        return _open(path)
    except OSError:
        pass
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _open(path)
        except OSError:
            path.unlink(missing_ok=True)  # a server that died without cleaning up
        with open(folder / f"{key}.log", "ab") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "mergeflow.stage_server", str(path)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, cwd="/", start_new_session=True, close_fds=True)
        deadline = time.monotonic() + _CONNECT_WAIT_S
        while True:
            try:
                return _open(path)
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:  # it failed to start: run plainly
                    raise
                time.sleep(0.02)


def _open(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


# ---------------------------------------------------------------------------------------------------------- server


def serve(path: Path) -> None:
    """Bind ``path`` at once (clients queue in the backlog), import the libraries, then fork a child per request
    until ``MERGEFLOW_STAGE_SERVER_IDLE`` seconds pass with no stage running."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = path.with_name(f"{path.name}.{os.getpid()}")
    listener.bind(str(staging))
    listener.listen(64)
    os.replace(staging, path)  # atomic: a client never connects to a half-made server
    bound = path.stat().st_ino
    for name in PRELOADED:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a library that cannot load here is one the stages import themselves
            print(f"mergeflow stage server: not preloading {name}: {exc!r}", file=sys.stderr, flush=True)
    idle_s = float(os.environ.get(IDLE, "120"))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    running: dict[int, _Job] = {}  # pidfd -> its stage
    last_active = time.monotonic()
    try:
        while running or time.monotonic() - last_active < idle_s:
            for event, _ in selector.select(timeout=1.0):
                if event.data is None:
                    conn, _ = listener.accept()
                    job = _start_child(conn, listener, running)
                    if job is None:
                        conn.close()
                        continue
                    running[job.pidfd] = job
                    selector.register(job.pidfd, selectors.EVENT_READ, ("ended", job))
                    selector.register(conn, selectors.EVENT_READ, ("client gone", job))
                elif event.data[0] == "ended":
                    job = event.data[1]
                    del running[job.pidfd]
                    selector.unregister(job.pidfd)
                    os.close(job.pidfd)
                    if not job.client_gone:
                        selector.unregister(job.conn)
                    _, status = os.waitpid(job.pid, 0)
                    _report(job.conn, status)
                    last_active = time.monotonic()
                else:  # the client died before its stage ended: it forwards every signal it can catch, so it was
                    # killed outright (kill -9), and so is the stage, as a plain stage process would have been
                    job = event.data[1]
                    job.client_gone = True
                    selector.unregister(job.conn)
                    os.kill(job.pid, signal.SIGKILL)
    finally:
        try:
            if path.stat().st_ino == bound:
                path.unlink()
        except OSError:
            pass


@dataclass
class _Job:
    pid: int
    pidfd: int
    conn: socket.socket
    client_gone: bool = False


def _report(conn: socket.socket, status: int) -> None:
    line = f"signal {os.WTERMSIG(status)}\n" if os.WIFSIGNALED(status) else f"exit {os.waitstatus_to_exitcode(status)}\n"
    try:
        conn.sendall(line.encode())
    except OSError:
        pass
    conn.close()


def _start_child(conn: socket.socket, listener: socket.socket, running: dict[int, _Job]) -> _Job | None:
    """Read one request and fork its child; None for a request that cannot be read."""
    fds: list[int] = []
    try:
        conn.settimeout(10.0)
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        while len(data) >= 8 and len(data) < 8 + int.from_bytes(data[:8], "big") <= _MAX_REQUEST:
            more = conn.recv(1 << 16)
            if not more:
                break
            data += more
        request = json.loads(data[8:])
        conn.settimeout(None)
    except (OSError, ValueError):
        request = None
    if request is None or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None
    # Blocked from before the fork until the child has its start-up handlers: a signal the client forwards as soon as
    # it knows the pid then meets the stage, as it would meet a plain ``python -m`` that had reached tasks/__init__.
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED_SIGNALS)
    pid = os.fork()
    if pid == 0:
        listener.close()
        for other in running.values():
            other.conn.close()
            os.close(other.pidfd)
        conn.close()
        _run_child(request, array.array("i", fds).tolist())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED_SIGNALS)
    for fd in fds:
        os.close(fd)
    try:
        conn.sendall(f"pid {pid}\n".encode())
    except OSError:
        os.kill(pid, signal.SIGTERM)
    return _Job(pid, os.pidfd_open(pid), conn)


def _run_child(request: dict[str, Any], fds: list[int]) -> None:
    """Become ``python -m module args`` in the client's place; never returns."""
    import runpy
    import traceback

    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[SWITCH] = "0"  # this process is the served stage: its own imports of tasks must not delegate again
        os.umask(request["umask"])
        sys.path[:] = request["path"]
        sys.orig_argv = request["orig_argv"]
        sys.argv = ["-m", *request["args"]]  # what ``python -m`` shows while it imports the module's package
        _rebind_standard_streams()
        for name in [name for name in sys.modules if name.split(".")[0] in _PROJECT_PACKAGES]:
            del sys.modules[name]
        importlib.invalidate_caches()
        from mergeflow.interrupts import exit_while_starting  # from disk, as tasks/__init__ will import it

        exit_while_starting("mergeflow: stage")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED_SIGNALS)
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        _flush_and_die_of(signal.SIGINT)
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        import atexit

        atexit._run_exitfuncs()
    finally:
        _flush()
        os._exit(code)


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _rebind_standard_streams() -> None:
    """New text streams over the client's descriptors, buffered as a fresh interpreter buffers them: stdout by
    lines on a terminal (write-through with PYTHONUNBUFFERED), by blocks otherwise; stderr by lines."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    encoding = os.environ.get("PYTHONIOENCODING") or None

    def writer(fd: int, line_buffering: bool, errors: str) -> io.TextIOWrapper:
        binary = open(fd, "wb", buffering=0 if unbuffered else -1, closefd=False)
        return io.TextIOWrapper(binary, encoding=encoding, errors=errors, line_buffering=line_buffering,
                                write_through=unbuffered)

    sys.stdin = open(0, encoding=encoding, closefd=False)
    sys.stdout = writer(1, os.isatty(1), "strict")
    sys.stderr = writer(2, True, "backslashreplace")


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _flush_and_die_of(signum: int) -> None:
    _flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
