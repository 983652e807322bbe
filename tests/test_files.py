"""What is at a path, in words, and writes that are whole or absent (pipeline/core/files.py):
every kind of file a user can leave where we read or write, and a write that fails."""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from pipeline.core import files

_WRITERS: list[tuple[Path, threading.Thread]] = []


def make_kind(kind: str, path: Path) -> None:
    """Put a `kind` of file (a key of KINDS) at `path`. A FIFO gets a writer that ends the
    stream as soon as someone opens it, so code that wrongly reads it fails its test instead
    of waiting for good; `release_fifos` ends the writers nobody read from."""
    if kind == "file":
        path.write_bytes(b"x")
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
        writer = threading.Thread(target=lambda: os.close(os.open(path, os.O_WRONLY)), daemon=True)
        writer.start()
        _WRITERS.append((path, writer))
    elif kind == "socket":
        # AF_UNIX paths are limited to about 100 bytes: bind by a short relative name
        here = Path.cwd()
        os.chdir(path.parent)
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.bind(path.name)
        finally:
            os.chdir(here)
    elif kind == "device":
        path.symlink_to("/dev/null")
    elif kind == "dangling":
        path.symlink_to("nowhere")
    elif kind == "loop":
        path.symlink_to(path.name)
    else:
        raise ValueError(kind)


@pytest.fixture(autouse=True)
def release_fifos():
    """After each test: a reader for each FIFO writer still waiting in open(), which ends it."""
    yield
    while _WRITERS:
        path, writer = _WRITERS.pop()
        # open until the writer is done: one that had not reached its open() yet finds a
        # reader there, instead of waiting for the next one
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never blocks
        writer.join()
        os.close(reader)


# Every kind of thing a path can hold, and how `files.kind` names it.
KINDS = {
    "file": "a file",
    "folder": "a folder",
    "fifo": "a FIFO (named pipe)",
    "socket": "a socket",
    "device": "a character device",
    "dangling": "a symbolic link to nowhere, which does not exist",
    "loop": "a symbolic link that loops",
}
NOT_FILES = [k for k in KINDS if k != "file"]  # what a command must refuse to read
NOT_FOLDERS = [k for k in KINDS if k != "folder"]  # what a command must refuse to write into


@pytest.mark.parametrize("kind", KINDS)
def test_kind_names_every_kind_of_file(tmp_path, kind):
    make_kind(kind, tmp_path / "x")
    assert files.kind(tmp_path / "x") == KINDS[kind]


def test_kind_of_nothing_is_missing(tmp_path):
    assert files.kind(tmp_path / "x") == "missing"
    (tmp_path / "f").write_text("")
    assert files.kind(tmp_path / "f" / "x") == "missing"  # under a file


@pytest.mark.parametrize("kind", NOT_FOLDERS)
def test_not_a_folder_says_why_for_the_path_and_below_it(tmp_path, kind):
    make_kind(kind, tmp_path / "x")
    assert files.not_a_folder(tmp_path / "x") == f"is {KINDS[kind]}, not a folder"
    assert files.not_a_folder(tmp_path / "x" / "a" / "b") == (
        f"is under {tmp_path / 'x'}, which is {KINDS[kind]}"
    )


def test_a_folder_or_a_missing_one_can_be_a_folder(tmp_path):
    assert files.not_a_folder(tmp_path) is None
    assert files.not_a_folder(tmp_path / "a" / "b") is None


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_new_files_and_folders_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        files.write_atomic(tmp_path / "f", b"x")
        folder = files.new_folder(tmp_path, ".new-")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    assert folder.name.startswith(".new-") and not any(folder.iterdir())


@pytest.mark.parametrize("kind", ["fifo", "folder", "dangling"])
def test_write_atomic_never_goes_through_what_is_at_a_fixed_temporary_name(tmp_path, kind):
    """A FIFO at `x.tmp` would block an open() for good; a folder would make it fail."""
    make_kind(kind, tmp_path / "x.tmp")
    files.write_atomic(tmp_path / "x", b"content")
    assert (tmp_path / "x").read_bytes() == b"content"
    assert files.kind(tmp_path / "x.tmp") == KINDS[kind]


FAULTS = [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO]


@pytest.mark.parametrize("code", FAULTS, ids=errno.errorcode.get)
def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch, code):
    target = tmp_path / "x"
    target.write_bytes(b"old")

    def fail(fd, content):
        os.write(fd, bytes(content)[:2])  # half of it, then the disk says no
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files, "_write_all", fail)
    with pytest.raises(OSError) as raised:
        files.write_atomic(target, b"new content")
    assert raised.value.errno == code
    assert [p.name for p in tmp_path.iterdir()] == ["x"] and target.read_bytes() == b"old"


def test_new_folders_removes_only_the_folders_it_made(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(OSError):
        with files.new_folders(tmp_path / "a" / "b" / "c"):
            assert (tmp_path / "a" / "b" / "c").is_dir()
            raise OSError(errno.ENOSPC, "No space left on device")
    assert [p.name for p in tmp_path.iterdir()] == ["a"] and not any((tmp_path / "a").iterdir())
    with files.new_folders(tmp_path / "a" / "b"):
        pass
    assert (tmp_path / "a" / "b").is_dir()  # kept when the block succeeds


ADVICE = [
    (errno.ENOSPC, "no space left on device: free some space there"),
    (errno.EDQUOT, "free some space there"),
    (errno.EFBIG, "file too large: free some space there"),
    (errno.EACCES, "permission denied: use a folder you can write"),
    (errno.EROFS, "read-only file system: use a folder you can write"),
    (errno.ENOENT, "no such file or directory: use another folder"),
]


@pytest.mark.parametrize("code, advice", ADVICE, ids=[errno.errorcode[c] for c, _ in ADVICE])
def test_advice_says_what_to_do_about_a_failed_write(code, advice):
    assert advice in files.advice(OSError(code, os.strerror(code)))
