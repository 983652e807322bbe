"""Stop requests that cannot be lost and never land inside a database write.

Every way a command is told to end while it can still clean up is a stop request: Ctrl-C
(SIGINT), SIGTERM, a closed terminal or dropped ssh connection (SIGHUP, and EIO on writes to the
gone terminal), Ctrl-\\ (SIGQUIT), a closed pipe on stdout or stderr (`| head`: EPIPE), the CPU
time limit's warning (SIGXCPU). Each raises `Interrupted` (a KeyboardInterrupt) in the main
thread, so a command stops within seconds wherever it waits, its runs end KILLED. A signal that
the command was started ignoring (`nohup` ignores SIGHUP; a background job of a script, SIGINT)
stays ignored. Two exceptions to "at once":

- Inside a database write (MLflow's or Optuna's store: SQLAlchemy, sqlite3, their store
  modules, or a function marked `store_write`), the raise waits until the write has returned.
  Raised in MLflow's `executemany` of a metrics insert, the exception left that transaction's
  lock on the SQLite file: no process could end its runs ("database is locked"), and `tune
  --workers 2` hung after SIGTERM. The handler looks at the interrupted stack; if a store is
  on it, a timer (SIGALRM, every 50 ms) tries again, and the training loop's and the tuning
  loop's `check()` raise it too, whichever comes first.
- A handler that only raised could be lost: CPython discards an exception raised while a
  garbage-collection callback runs ("Exception ignored in ... WeakIdKeyDictionary"). So the
  request is recorded first, `check()` (after every batch, between trials, in waits) raises
  again, and CPython's report of the discarded one is silenced.

Only the first signal raises: a second Ctrl-C while runs are being closed must not cut that
cleanup short.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading

_requested: list[int] = []  # the signals received, in order (a list: no `global` needed)
_raised: list[bool] = []  # non-empty once Interrupted was raised for them

# The signals that end a command cleanly (those this platform has).
STOP_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGXCPU")
    if hasattr(signal, name)
)
# A process started by ours with this variable set to our pid ends when we die (follow_parent).
PARENT_VARIABLE = "PIPELINE_PARENT_PID"
# Where a raise would interrupt a database write: the store libraries and MLflow's / Optuna's
# store layers (paths as in a frame's co_filename).
STORE_CODE = (
    "/sqlalchemy/",
    "<sqlalchemy ",
    "/sqlite3/",
    "/alembic/",
    "/pymysql/",
    "/psycopg",
    "/mlflow/store/",
    "/optuna/storages/",
)
_store_functions: set = set()  # code objects of functions marked `store_write`
RETRY_S = 0.05
# Write errors that say the reader of our output is gone: a closed pipe, a hung-up terminal.
GONE = {errno.EPIPE: signal.SIGPIPE, errno.EIO: getattr(signal, "SIGHUP", signal.SIGTERM)}


class Interrupted(KeyboardInterrupt):
    """A stop request (Ctrl-C, SIGTERM, ...); a KeyboardInterrupt, so every `except
    KeyboardInterrupt` that ends runs KILLED treats them all the same."""


def requested() -> bool:
    return bool(_requested)


def check() -> None:
    """Raise Interrupted when a stop was requested: call it at safe points."""
    if _requested:
        _raised.append(True)
        raise Interrupted(f"stopped by signal {signal.Signals(_requested[0]).name}")


def store_write(function):
    """Mark `function` as one write to a store: a stop request waits until it has returned
    (several calls that must land together, such as a trial and the name of its worker)."""
    _store_functions.add(function.__code__)
    return function


def in_store_call(frame) -> bool:
    """Is a database store's code on the stack that ends in `frame`?"""
    while frame is not None:
        name = frame.f_code.co_filename.replace("\\", "/")
        if frame.f_code in _store_functions or any(part in name for part in STORE_CODE):
            return True
        frame = frame.f_back
    return False


def _handle(signum, frame) -> None:
    first = not _requested
    _requested.append(signum)
    if first:
        _raise_when_safe(frame)


def _retry(signum, frame) -> None:
    """SIGALRM: the deferred raise, unless check() has raised meanwhile."""
    if _requested and not _raised:
        _raise_when_safe(frame)


def _raise_when_safe(frame) -> None:
    if in_store_call(frame) and hasattr(signal, "setitimer"):  # no timers on Windows
        signal.signal(signal.SIGALRM, _retry)
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    check()


class _Output:
    """stdout or stderr, whose reader going away (EPIPE, EIO) is a stop request: the write is
    dropped, later ones go nowhere, and the main thread stops as on a signal."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        return self._guard(self._stream.write, text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def _guard(self, call, *args):
        try:
            return call(*args)
        except OSError as e:
            if e.errno not in GONE:
                raise
            self._stream = open(os.devnull, "w")  # for the rest of the process
            first = not _requested
            _requested.append(GONE[e.errno])
            if first and threading.current_thread() is threading.main_thread():
                _raise_when_safe(sys._getframe(1))
            return 0


_hooks: list = []  # the unraisablehook ours replaced


def _discarded(report) -> None:
    """sys.unraisablehook: a stop request raised in a GC callback is discarded by CPython but
    recorded here (check() raises it again): no "Exception ignored ..." report for it."""
    if not isinstance(report.exc_value, Interrupted):
        (_hooks[-1] if _hooks else sys.__unraisablehook__)(report)


def install(signals: tuple[int, ...] = STOP_SIGNALS) -> None:
    """Handle `signals` in this process (the main thread only), unless one is ignored; treat a
    closed stdout or stderr as a stop request too."""
    for signum in signals:
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, _handle)
    if sys.unraisablehook is not _discarded:
        _hooks.append(sys.unraisablehook)
        sys.unraisablehook = _discarded
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _Output):
            setattr(sys, name, _Output(stream))


def reset() -> None:
    """Forget earlier requests (tests run several commands in one process)."""
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)
    _requested.clear()
    _raised.clear()


def follow_parent(parent: int | None = None) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies, however it dies (kill -9,
    the OOM killer): the kernel sends it, so no thread or pipe of ours has to notice.

    `parent`: the pid the parent must have (PARENT_VARIABLE, set by the process that started
    this one): a parent that died before the request was in place is then seen too. `mlflow
    run` starts the entry point as its child; a SIGTERM that kills `mlflow run` would otherwise
    leave the training running on its own, its run RUNNING. Linux ties the request to the
    parent's thread that started this process: ours start their children from the main thread,
    which lives as long as the process. Elsewhere than Linux: nothing.
    """
    import ctypes

    if not sys.platform.startswith("linux"):
        return
    expected = os.getppid() if parent is None else parent
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != expected:  # the parent died before the request was in place
        _requested.append(signal.SIGTERM)
