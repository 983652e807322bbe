"""Database URLs checked before a library opens them, and the lock that creates a new SQLite
store's tables one process at a time.

Left to the libraries, a malformed URL is a ValueError traceback, `sqlite://` keeps a store in
memory that is gone at exit, MLflow creates the folders of a mistyped SQLite path, and a file
that is not a database fails deep inside a migration. `problem(url)` says each in words
first; the callers (tracking/store.py, tuning/workers/storage.py) name the variable or option.

`creating_tables(path)`: MLflow builds a new SQLite store's tables in dozens of steps, none
safe to run twice at once, so two commands started together on a new store took turns dying
("duplicate column name"). An exclusive lock on the database's folder makes them take turns:
flock on the folder leaves no file behind and does not touch SQLite's own (fcntl) locks on the
database file, which closing a second descriptor of that file would drop.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from pipeline.core.errors import first_line

SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
IN_MEMORY = "is an in-memory database, gone when this process ends: name a file (sqlite:///FILE.db)"


def parsed(url: str) -> tuple[URL | None, str | None]:
    """SQLAlchemy's reading of `url`, or why it cannot read it."""
    try:
        return make_url(url), None
    except (ArgumentError, ValueError) as e:  # ValueError: a bad port, a bad IPv6 address
        return None, f"is not a valid database URL ({first_line(e)})"


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (relative to the working directory), None for any other URL
    and for an in-memory database."""
    found, _ = parsed(url)
    if found is None or found.get_backend_name() != "sqlite":
        return None
    database = found.database or ""
    if database in ("", ":memory:") or found.query.get("mode") == "memory":
        return None
    # An SQLite URI filename (sqlite:///file:NAME?uri=true): the path is what follows "file:".
    return Path(database.removeprefix("file:") if found.query.get("uri") else database)


def problem(url: str) -> str | None:
    """Why `url` cannot hold a store that outlives this process, in words, or None. Only what
    is certain without connecting: a server's database answers for itself."""
    found, why = parsed(url)
    if found is None:
        return why
    if found.get_backend_name() != "sqlite":
        return None
    path = sqlite_path(url)
    if path is None:
        return IN_MEMORY
    if path.is_dir():
        return f"{path} is a folder, not a database file"
    if not path.parent.is_dir():
        return f"no folder {path.parent} (a typo? create the folder first)"
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return None  # a new store: SQLite creates the file
    except OSError as e:
        return f"{path} cannot be read ({e.strerror})"
    if head and head != SQLITE_HEADER:  # SQLite reads an empty file as an empty database
        return f"{path} is not an SQLite database"
    return None


@contextmanager
def creating_tables(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder of SQLite file `path` (blocking until it is free)
    while the block creates or upgrades the database's tables."""
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # releases the lock
