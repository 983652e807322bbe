"""Stop requests that cannot be lost and never land inside a database write.

Ctrl-C and SIGTERM raise `Interrupted` (a KeyboardInterrupt) in the main thread, so a command
stops within seconds wherever it waits. Two exceptions to "at once":

- Inside a database write (MLflow's or Optuna's store: SQLAlchemy, sqlite3, their store
  modules), the raise waits until the write has returned. Raised in MLflow's `executemany`
  of a metrics insert, the exception left that transaction's lock on the SQLite file: no
  process could end its runs ("database is locked"), and `tune --workers 2` hung after
  SIGTERM. The handler looks at the interrupted stack; if a store is on it, a timer
  (SIGALRM, every 50 ms) tries again, and the training loop's and the tuning loop's `check()`
  raise it too, whichever comes first.
- A handler that only raised could be lost: CPython discards an exception raised while a
  garbage-collection callback runs ("Exception ignored in ... WeakKeyDictionary"). So the
  request is recorded first, and `check()` (after every batch, between trials, in waits)
  raises again.

Only the first signal raises: a second Ctrl-C while runs are being closed must not cut that
cleanup short.
"""

from __future__ import annotations

import signal

_requested: list[int] = []  # the signals received, in order (a list: no `global` needed)
_raised: list[bool] = []  # non-empty once Interrupted was raised for them

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
RETRY_S = 0.05


class Interrupted(KeyboardInterrupt):
    """A stop request (Ctrl-C or SIGTERM); a KeyboardInterrupt, so every `except
    KeyboardInterrupt` that ends runs KILLED treats both the same."""


def requested() -> bool:
    return bool(_requested)


def check() -> None:
    """Raise Interrupted when a stop was requested: call it at safe points."""
    if _requested:
        _raised.append(True)
        raise Interrupted(f"stopped by signal {signal.Signals(_requested[0]).name}")


def in_store_call(frame) -> bool:
    """Is a database store's code on the stack that ends in `frame`?"""
    while frame is not None:
        name = frame.f_code.co_filename.replace("\\", "/")
        if any(part in name for part in STORE_CODE):
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


def install(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """Handle `signals` in this process (the main thread only)."""
    for signum in signals:
        signal.signal(signum, _handle)


def reset() -> None:
    """Forget earlier requests (tests run several commands in one process)."""
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)
    _requested.clear()
    _raised.clear()


def follow_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies.

    `mlflow run` starts the entry point as its child; a SIGTERM that kills `mlflow run` would
    otherwise leave the training running on its own, its run RUNNING. Elsewhere: nothing.
    """
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        _requested.append(signal.SIGTERM)
