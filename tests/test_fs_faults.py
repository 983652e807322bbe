"""The file system says no (issue 25): every kind of file where the data cache is written or
`predict` reads, a full disk, a read-only folder, an empty path (`replicate`'s cases:
tests/test_report_faults.py). Each is one line `error:`, exit 2, and nothing half-written is
left: no temporary file, no folder made for it.

A full disk is emulated in-process (the one write in pipeline/core/files.py raises
OSError(ENOSPC) and its kin) and, once, for real by a file-size limit in a subprocess; a
read-only folder by chmod where that stops writes (not as root), and by /proc, which refuses
root too. The kinds of files are tests/test_files.py's.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from pipeline.cli.command_settings import COMMANDS
from pipeline.core import data, files, options
from tests.conftest import with_this_checkout
from tests.test_bad_input import assert_one_line_and_nothing_written, files_under
from tests.test_files import KINDS, NOT_FILES, NOT_FOLDERS, make_kind, release_fifos  # noqa: F401

ROOT_USER = os.geteuid() == 0  # chmod does not stop root's writes
FULL = [  # (errno, what the line says)
    (errno.ENOSPC, "no space left on device: free some space there"),
    (errno.EDQUOT, "disk quota exceeded: free some space there"),
    (errno.EROFS, "read-only file system: use a folder you can write"),
    (errno.EACCES, "permission denied: use a folder you can write"),
]
FULL_IDS = [errno.errorcode[c] for c, _ in FULL]


def disk_says(code: int):
    """A stand-in for files._write_all: half the bytes, then the error a full disk gives."""

    def write(fd, content):
        os.write(fd, bytes(content[: len(content) // 2]))
        raise OSError(code, os.strerror(code))

    return write


def one_line(out, message: str) -> None:
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and message in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


# --- the data cache ------------------------------------------------------------------------


@pytest.fixture
def small_raw_files(monkeypatch):
    """prepare() on two tiny images instead of the real IDX files: the write is what is tried."""
    monkeypatch.setattr(data, "find_raw_files", lambda d: {n: Path(n) for n in data.SHA256})
    shapes = {"images": (2, 28, 28), "labels": (2,)}
    monkeypatch.setattr(
        data, "read_idx", lambda name, path: np.zeros(shapes[name.split("-")[1]], np.uint8)
    )


@pytest.mark.parametrize("kind", NOT_FILES)
def test_a_cache_path_that_is_not_a_file_is_refused_and_kept(tmp_path, kind):
    cache = tmp_path / data.CACHE_NAME
    make_kind(kind, cache)
    with pytest.raises(data.DataError, match=f"is {re.escape(KINDS[kind])}, not the data cache"):
        data.prepare(tmp_path)
    assert files.kind(cache) == KINDS[kind] and [p.name for p in tmp_path.iterdir()] == [
        data.CACHE_NAME
    ]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO], ids=errno.errorcode.get)
def test_a_cache_that_cannot_be_read_says_so_not_that_it_is_corrupt(tmp_path, monkeypatch, code):
    cache = tmp_path / data.CACHE_NAME
    cache.write_bytes(b"a cache")

    def read_bytes(self):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(data.DataError, match=f"cannot be read \\({os.strerror(code)}\\)$"):
        data.prepare(tmp_path)


@pytest.mark.parametrize("kind", NOT_FOLDERS)
def test_a_data_dir_that_is_not_a_folder_is_refused(tmp_path, kind):
    make_kind(kind, tmp_path / "d")
    with pytest.raises(data.DataError, match=f"is {re.escape(KINDS[kind])}, not a folder"):
        data.prepare(tmp_path / "d")
    with pytest.raises(data.DataError, match=f"is under .*d, which is {re.escape(KINDS[kind])}"):
        data.prepare(tmp_path / "d" / "data")


@pytest.mark.parametrize("code, message", FULL, ids=FULL_IDS)
def test_a_cache_that_cannot_be_written_leaves_nothing(
    tmp_path, monkeypatch, small_raw_files, code, message
):
    monkeypatch.setattr(files, "_write_all", disk_says(code))
    with pytest.raises(data.DataError, match=f"cannot write the data cache .*: {message}"):
        data.prepare(tmp_path / "new" / "data")
    assert not any(tmp_path.iterdir())  # no cache, no temporary file, no folder made for them
    (tmp_path / "data").mkdir()
    with pytest.raises(data.DataError):
        data.prepare(tmp_path / "data")
    assert not any((tmp_path / "data").iterdir())  # the user's folder stays, empty


def test_a_cache_is_written_whole(tmp_path, small_raw_files):
    payload = data.prepare(tmp_path / "data")
    assert [p.name for p in (tmp_path / "data").iterdir()] == [data.CACHE_NAME]
    assert payload["train_images"].shape == (2, 28, 28)


@pytest.mark.skipif(ROOT_USER, reason="chmod does not stop root's writes; /proc is tried below")
def test_a_read_only_data_dir_is_one_line(tmp_path, small_raw_files):
    (tmp_path / "data").mkdir(mode=0o555)
    with pytest.raises(data.DataError, match="permission denied: use a folder you can write"):
        data.prepare(tmp_path / "data")
    assert not any((tmp_path / "data").iterdir())


def test_a_data_dir_where_nothing_can_be_written_is_one_line(small_raw_files):
    with pytest.raises(data.DataError, match="--data-dir /proc/no-data: cannot write"):
        data.prepare("/proc/no-data")


@pytest.mark.parametrize("kind", ["folder", "fifo", "dangling"])
def test_prepare_refuses_a_cache_path_in_one_line(tmp_path, command, kind):
    (tmp_path / "data").mkdir()
    make_kind(kind, tmp_path / "data" / data.CACHE_NAME)
    before = files_under(tmp_path)
    out = command("prepare", "--data-dir", "data")
    assert_one_line_and_nothing_written(tmp_path, before, out, "not the data cache")


@pytest.mark.slow
def test_a_disk_that_fills_while_the_cache_is_written_is_one_line(tmp_path):
    """A real write error, no root needed: a 1 MB file-size limit (EFBIG, the 55 MB cache)."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the error, not the signal's death
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "prepare", "--data-dir", "new/data"],
        cwd=tmp_path,
        env=with_this_checkout(None),
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=300,
    )
    one_line(out, "--data-dir new/data: cannot write the data cache fashion_mnist.pt: file too")
    assert not any(tmp_path.iterdir())


# --- an empty path, for every path option --------------------------------------------------

EMPTY = [
    (command, option)
    for command, cls in COMMANDS.items()
    for option in options.of(cls)
    if option.kind in ("path", "paths")
]


def test_the_empty_path_table_covers_the_path_options():
    assert {c for c, _ in EMPTY} >= {"prepare", "train", "tune", "replicate", "predict"}


@pytest.mark.parametrize("name, option", EMPTY, ids=[f"{c}-{o.name}" for c, o in EMPTY])
def test_an_empty_path_is_refused(tmp_path, command, name, option):
    """Path("") is Path("."): unrefused, `--data-dir ""` caches 55 MB in the current folder."""
    args = [""] if option.kind == "paths" else [option.flag, ""]
    if name == "predict" and option.kind != "paths":
        args = ["ok.png", *args]
    before = files_under(tmp_path)
    out = command(name, *args)
    assert_one_line_and_nothing_written(tmp_path, before, out, f"{option.name}: '' is not a path")


# --- predict reads regular files only ------------------------------------------------------


@pytest.mark.parametrize("kind", NOT_FILES)
@pytest.mark.parametrize("inside", [False, True], ids=["named", "in-a-folder"])
def test_predict_reads_only_regular_files(tmp_path, command, kind, inside):
    """A FIFO would block the read for good; a device may never end."""
    if inside:
        (tmp_path / "images").mkdir()
    path = Path("images/x.png" if inside else "x.png")
    make_kind(kind, tmp_path / path)
    if kind == "folder" and not inside:  # a folder named: the images in it are what is read
        (tmp_path / path / "y.png").mkdir()
        path = path / "y.png"
    out = command("predict", "images" if inside else "x.png")
    one_line(out, f"{path}: is {KINDS[kind]}; predict reads only regular files")


@pytest.mark.parametrize("kind", ["mlruns a file", "its folder a file"])
def test_an_artifact_folder_that_cannot_be_one_is_refused_before_any_run(
    tmp_path, command, data_dir, kind
):
    """The default artifact root is ./mlruns beside the store: a file there (or above it) is one
    line before the run starts, not a traceback from the first artifact the run logs."""
    blocker = tmp_path / "mlruns"
    if kind == "mlruns a file":
        blocker.write_text("not a folder")
    else:
        blocker.mkdir()
        (blocker / "1").write_text("not a folder")  # the new experiment's own folder
    out = command("train", "--epochs", "1", "--data-dir", str(data_dir))
    assert out.returncode == 2
    line = out.stderr.strip().splitlines()[-1]  # after MLflow's own lines on a new store
    assert line.startswith("error: the experiment's artifact folder ")
    assert ("which is a file" if kind == "mlruns a file" else "is a file, not a folder") in line
    assert "Traceback" not in out.stderr
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []
