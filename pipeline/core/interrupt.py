"""Stop requests that cannot be lost: Ctrl-C and SIGTERM set a flag that safe points check.

A signal handler that only raises KeyboardInterrupt can be lost: CPython discards an exception
raised while a garbage-collection callback runs ("Exception ignored in ... WeakKeyDictionary"),
and the process runs on. So the handler records the request first, then raises; the training
loop checks the flag after every batch and the tuning loop between trials, and raise again
if the first raise was swallowed. Only the first signal raises: a second Ctrl-C while runs are
being closed must not cut that cleanup short.
"""

from __future__ import annotations

import signal

_requested: list[int] = []  # the signals received, in order (a list: no `global` needed)


class Interrupted(KeyboardInterrupt):
    """A stop request (Ctrl-C or SIGTERM); a KeyboardInterrupt, so every `except
    KeyboardInterrupt` that ends runs KILLED treats both the same."""


def requested() -> bool:
    return bool(_requested)


def check() -> None:
    """Raise Interrupted when a stop was requested: call it at safe points."""
    if _requested:
        raise Interrupted(f"stopped by signal {signal.Signals(_requested[0]).name}")


def _handle(signum, frame) -> None:
    first = not _requested
    _requested.append(signum)
    if first:
        raise Interrupted(f"stopped by signal {signal.Signals(signum).name}")


def install() -> None:
    """Handle SIGINT and SIGTERM in this process (the main thread only)."""
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def reset() -> None:
    """Forget earlier requests (tests run several commands in one process)."""
    _requested.clear()


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
