"""SIGINT and SIGTERM as one exception, so every ``finally`` and atomic write cleans up before a one-line exit.

Why: Python's default SIGTERM ends the process on the spot (no ``finally`` runs, temp files stay behind) and its
SIGINT prints a traceback. Inside :class:`ExitOnInterrupt` both raise :class:`Interrupted` wherever the main thread
is; the block's end prints one line and sets the exit status a shell gives a signal death (128 + the number: 130
for SIGINT, 143 for SIGTERM). The CLI and every stage use this one context; a stage's imports (seconds of torch, before
that context exists) are covered by :func:`exit_while_starting`. SIGXFSZ is ignored there too, so a write
past the file-size limit (``ulimit -f``) fails as ``OSError(EFBIG)`` and is cleaned up like any other error instead
of killing the process.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

_STOPPING = (signal.SIGINT, signal.SIGTERM)
_NOTHING_LEFT = "no partial file was left behind"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: a KeyboardInterrupt, so that ``except Exception`` never swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class ExitOnInterrupt:
    """Within the block SIGINT/SIGTERM raise :class:`Interrupted` and SIGXFSZ is ignored; an interrupt that ends the
    block prints ``<prefix> interrupted (SIGTERM); ...`` on stderr and leaves the exit status in ``exit_code``
    (``debug``: it propagates instead, with its traceback). Outside the main thread signals cannot be handled and
    the block runs as it is.

    A signal can also arrive while ``__enter__`` or ``__exit__`` themselves run, outside the block's protection,
    where a raised exception would end the process with a traceback: during ``__enter__`` nothing has been written,
    so the process ends at once with the one line; during ``__exit__`` the body has finished, so the signal is kept
    and reported as the block's interrupt (exit status included) once the handlers are restored.

    ``leaving``: the block is the process's whole work (a command, a stage), so its end ignores SIGINT/SIGTERM
    instead of restoring the previous handlers: what is left is printing the status and the interpreter's teardown,
    and a stop signal there would otherwise kill it silently (SIGTERM) or print a traceback (SIGINT) after the work
    has finished. The process then leaves, moments later, with the work's own exit status."""

    def __init__(self, prefix: str, debug: bool = False, leaving: bool = False) -> None:
        self.prefix = prefix
        self.debug = debug
        self.leaving = leaving
        self.exit_code: int | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._late: int | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # A second signal while the first unwinds is ignored: the cleanup (unlinking temp files) must be allowed to
        # finish.
        for stopping in _STOPPING:
            signal.signal(stopping, signal.SIG_IGN)
        where = _own_method(frame)
        if where == "enter":
            os.write(2, f"{self._line(signum)}\n".encode())
            os._exit(128 + signum)
        if where == "exit":
            self._late = signum
            return
        raise Interrupted(signum)

    def _line(self, signum: int) -> str:
        return f"{self.prefix} interrupted ({signal.Signals(signum).name}); {_NOTHING_LEFT}"

    def __enter__(self) -> ExitOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            for signum in _STOPPING:
                self._previous[signum] = signal.signal(signum, self._on_signal)
            if hasattr(signal, "SIGXFSZ"):
                self._previous[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> bool:
        for restored, handler in self._previous.items():
            signal.signal(restored, signal.SIG_IGN if self.leaving and restored in _STOPPING else handler)
        if error is None and self._late is not None:
            signum: int = self._late
        elif isinstance(error, KeyboardInterrupt) and not self.debug:
            signum = error.signum if isinstance(error, Interrupted) else signal.SIGINT
        else:
            return False
        print(self._line(signum), file=sys.stderr, flush=True)
        self.exit_code = 128 + signum
        return True


_OWN_CODE = {ExitOnInterrupt.__enter__.__code__: "enter", ExitOnInterrupt.__exit__.__code__: "exit"}


def _own_method(frame: FrameType | None) -> str | None:
    """'enter' or 'exit' when the interrupted code runs inside ExitOnInterrupt's own ``__enter__``/``__exit__``."""
    while frame is not None:
        if frame.f_code in _OWN_CODE:
            return _OWN_CODE[frame.f_code]
        frame = frame.f_back
    return None


def exit_while_starting(prefix: str) -> None:
    """Until an :class:`ExitOnInterrupt` block takes over, SIGINT/SIGTERM end the process at once with one line and
    130/143: a command still importing its modules has written nothing, so there is nothing to clean up (and Python
    would print a traceback for SIGINT, nothing at all for SIGTERM)."""

    def exit_now(signum: int, frame: FrameType | None) -> None:
        os.write(2, f"{prefix} interrupted ({signal.Signals(signum).name}) while starting; {_NOTHING_LEFT}\n".encode())
        os._exit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for signum in _STOPPING:
            signal.signal(signum, exit_now)
