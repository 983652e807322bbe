"""What the file system holds at a path, in words, and writes that leave nothing half-done.

Opening a FIFO blocks until someone writes to it and a device can be endless, so commands read
only regular files and name anything else with `kind` in their one-line error. Files are
written under a fresh name beside their target, created exclusively (never through whatever a
user left at a fixed name such as `x.tmp`) with the permissions the umask gives, then renamed
over it; when a write fails (a full disk, a read-only folder) the temporary file is removed
before the OSError goes up, and `new_folders` removes the folders it made for it. `advice`
turns such an OSError into what to do about it.

Standard library only: the core uses it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

OTHER_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def kind(path: str | os.PathLike) -> str:
    """What is at `path`, symbolic links followed: 'a file' (a regular one), 'a folder', 'a FIFO
    (named pipe)', 'a socket', 'a character device', 'a block device', 'a symbolic link to T,
    which does not exist', 'a symbolic link that loops', or 'missing'."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if os.path.islink(path):
            if e.errno == errno.ELOOP:
                return "a symbolic link that loops"
            return f"a symbolic link to {os.readlink(os.fspath(path))}, which does not exist"
        return "missing" if e.errno in (errno.ENOENT, errno.ENOTDIR) else f"unreadable ({e})"
    if stat.S_ISREG(mode):
        return "a file"
    return next((name for test, name in OTHER_KINDS if test(mode)), "not a regular file")


def not_a_folder(folder: Path) -> str | None:
    """Why `folder` cannot be (or be created as) a folder, in words; None when it can."""
    for existing in (folder, *folder.parents):
        if os.path.lexists(existing):
            break
    if existing.is_dir():
        return None
    if existing == folder:
        return f"is {kind(folder)}, not a folder"
    return f"is under {existing}, which is {kind(existing)}"


def advice(e: OSError) -> str:
    """Why a write failed and what to do, for the end of a one-line error."""
    reason = (e.strerror or str(e)).lower()
    if e.errno in FULL:
        return f"{reason}: free some space there, or use a folder on another disk"
    if e.errno in DENIED:
        return f"{reason}: use a folder you can write"
    return f"{reason}: use another folder"


def write_atomic(path: Path, content: bytes | memoryview) -> None:
    """`content` as the file `path`, whole or not at all."""
    fd, tmp = _fresh(
        path.parent,
        f".{path.name}.",
        lambda p: os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666),  # umask applies
        suffix=".tmp",
    )
    try:
        try:
            _write_all(fd, content)
            os.fsync(fd)  # the bytes on disk before the rename makes them the file
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def new_folder(parent: Path, prefix: str) -> Path:
    """A new, empty folder in `parent` named `prefix` and a random tail, with the permissions
    the umask gives (tempfile.mkdtemp's are 0700: others could not read a report)."""
    return _fresh(parent, prefix, lambda p: os.mkdir(p, 0o777))[1]


@contextlib.contextmanager
def new_folders(folder: Path) -> Iterator[None]:
    """Create `folder` and its missing parents; when the block fails, remove those it made."""
    made = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for p in made:
            with contextlib.suppress(OSError):  # no longer empty: someone else's now
                p.rmdir()
        raise


def _fresh(
    parent: Path, prefix: str, make: Callable[[Path], T], suffix: str = ""
) -> tuple[T, Path]:
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            return make(path), path
        except FileExistsError:
            continue


def _write_all(fd: int, content: bytes | memoryview) -> None:
    # os.write may write fewer bytes than asked; every file goes through here, so a test can
    # make this one place fail as a full disk does.
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view) :]
