"""`dashboard`: optuna-dashboard on the study storage tune used, checked before it starts.

A storage that does not exist is refused rather than created empty (a misspelled file name
would otherwise serve an empty store), and the address is tried before the server starts, so a
port in use is one line. Ctrl-C is how a server ends: it stops with a short note, exit 0.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from pipeline.cli.command_settings import DashboardOptions
from pipeline.core.errors import UserError
from pipeline.tuning.tune_settings import DEFAULT_STORAGE


def dashboard(opts: DashboardOptions) -> None:
    """Start optuna-dashboard on a study storage (open http://HOST:PORT; Ctrl-C stops it)."""
    check_exists(opts.storage)
    check_free(opts.host, opts.port)
    from optuna_dashboard import run_server

    from pipeline.core.credentials import without_password
    from pipeline.tuning.workers.storage import make_storage

    storage = make_storage(opts.storage)
    print(
        f"optuna-dashboard on http://{opts.host}:{opts.port} for "
        f"{without_password(opts.storage)} (Ctrl-C stops it)",
        flush=True,
    )
    try:
        run_server(storage, host=opts.host, port=opts.port)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (pipeline/core/interrupt.py)
        print("optuna-dashboard stopped")


def check_exists(url: str) -> None:
    """Refuse an SQLite or journal storage whose file does not exist."""
    if "://" in url and not url.startswith("sqlite:"):
        return  # a database server: make_storage reports what is wrong with it
    if "://" in url:
        from sqlalchemy.engine import make_url  # SQLAlchemy: not for --help

        path = make_url(url).database or ""
    else:
        path = url
    if path in ("", ":memory:"):
        raise UserError(
            f"storage {url}: an in-memory database holds no study; give the "
            f"storage tune used (its default: {DEFAULT_STORAGE})"
        )
    if not Path(path).is_file():
        raise UserError(
            f"storage {url}: no such file {path} (a dashboard does not create "
            f"one); give the storage tune used (its default: {DEFAULT_STORAGE})"
        )


def check_free(host: str, port: int) -> None:
    """Refuse an address the server could not listen on (a port in use, an unknown host)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind((host, port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is in use (another dashboard?); choose another --port"
            ) from None
        raise UserError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); check --host and --port"
        ) from None
