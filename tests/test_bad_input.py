"""Bad input to every command, as a user types it: exit code 2, one line `error: ...` naming what
is wrong, no traceback, and nothing written (no tracking store, no study, no file).

The commands run in this process through the same `main()` a user's shell reaches (a
subprocess per case would spend most of its time importing torch); stderr is captured at the
file descriptor, so a library's warning or traceback would show.
"""

from __future__ import annotations

import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.core import interrupt
from tests.conftest import ROOT

SPACE = "lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\nbatch_size: 512\n"
BIG = "99999999999999999999"

# (id, command line, expected part of the one line). In the command line, {data} is a prepared
# data folder, {busy} a port something listens on; the other names are files of `workspace`.
CASES = [
    # train: choices and types (typer), values (the options' definitions)
    ("train-model", "train --model resnet", "'--model'"),
    ("train-optimizer", "train --optimizer lbfgs", "'--optimizer'"),
    ("train-init", "train --init zeros", "'--init'"),
    ("train-schedule", "train --schedule step", "'--schedule'"),
    ("train-lr-zero", "train --lr 0", "lr: 0.0 must be a number > 0"),
    ("train-lr-negative", "train --lr -1e-3", "lr: -0.001 must be a number > 0"),
    ("train-lr-text", "train --lr fast", "'--lr'"),
    ("train-lr-nan", "train --lr nan", "lr: nan must be a number > 0"),
    ("train-dropout", "train --dropout 1", "dropout: 1.0 must be a number in [0, 1)"),
    ("train-epochs-zero", "train --epochs 0", "epochs: 0 must be an integer from 1 to 10000"),
    ("train-epochs-float", "train --epochs 2.5", "'--epochs'"),
    ("train-epochs-huge", f"train --epochs {BIG}", f"epochs: {BIG} must be an integer from 1"),
    ("train-batch-zero", "train --batch-size 0", "batch_size: 0 must be an integer from 1"),
    ("train-batch-huge", "train --batch-size 100000", "batch_size: 100000 must be an integer"),
    ("train-hidden-text", "train --hidden 300,x", "hidden: '300,x' is not a list of positive"),
    ("train-hidden-empty", ["train", "--hidden", ""], "hidden: '' is empty"),
    ("train-hidden-empty-entry", "train --hidden 300,,200", "hidden: '300,,200' has an empty"),
    ("train-hidden-huge", "train --hidden 100000000", "sizes up to 16384"),
    ("train-batch-norm", "train --batch-norm maybe", "batch_norm: 'maybe' must be true or false"),
    ("train-weight-decay", "train --weight-decay -1", "weight_decay: -1.0 must be a number >= 0"),
    ("train-label-smoothing", "train --label-smoothing 1", "label_smoothing: 1.0 must be"),
    ("train-augment", "train --augment sometimes", "augment: 'sometimes' must be true or false"),
    ("train-max-shift", "train --max-shift 9", "max_shift: 9 must be an integer from 0 to 8"),
    ("train-seed", "train --seed -1", "seed: -1 must be an integer from 0"),
    ("train-unknown-option", "train --bogus 1", "--bogus"),
    (
        "train-unknown-recipe",
        "train --recipe fast",
        "recipe: 'fast' is not one of study_fcn, study_cnn, fast_cnn, wide_fcn",
    ),
    ("train-hidden-deep", "train --hidden 8,8,8,8,8,8,8,8,8", "hidden: 9 layers; give at most 8"),
    ("train-recipe-then-bad-value", "train --recipe fast_cnn --lr 0", "lr: 0.0 must be"),
    ("train-data-dir-is-a-file", "train --data-dir afile", "afile: is a file, not a folder"),
    # tune: values and combinations
    ("tune-model", "tune --model vgg", "'--model'"),
    ("tune-n-trials-negative", "tune --n-trials -1", "n_trials: -1 must be an integer from 0"),
    ("tune-n-trials-text", "tune --n-trials many", "'--n-trials'"),
    ("tune-epochs-negative", "tune --epochs -3", "epochs: -3 must be an integer from 0"),
    ("tune-epochs-huge", f"tune --epochs {BIG}", f"epochs: {BIG} must be an integer from 0"),
    ("tune-timeout-negative", "tune --timeout -5", "timeout: -5.0 must be a number >= 0"),
    ("tune-timeout-nan", "tune --n-trials 0 --timeout nan", "timeout: nan must be a number"),
    ("tune-timeout-inf", "tune --timeout inf", "timeout: inf must be a number >= 0"),
    ("tune-seed-negative", "tune --seed -1", "seed: -1 must be an integer from 0"),
    ("tune-never-ends", "tune --n-trials 0 --timeout 0", "the study would never end"),
    ("tune-total-trials", "tune --total-trials -2", "total_trials: -2 must be an integer"),
    ("tune-heartbeat", "tune --heartbeat -1", "heartbeat: -1 must be an integer from 0"),
    (
        "tune-grace-below-heartbeat",
        "tune --heartbeat 60 --grace-period 30",
        "grace_period: 30 must be greater than heartbeat (60)",
    ),
    (
        "tune-grace-negative",
        "tune --heartbeat 0 --grace-period -5",
        "grace_period: -5 must be an integer from 1",
    ),
    ("tune-pruner", "tune --pruner random", "'--pruner'"),
    ("tune-objective-unknown", "tune --objectives val_acc,loss", "'--objectives'"),
    (
        "tune-frontier-pruner",
        "tune --objectives val_acc,train_time_s --pruner median",
        "pruner: median cannot stop trials of a frontier study (Optuna prunes no multi-objective",
    ),
    ("tune-workers-zero", "tune --workers 0", "workers: 0 must be an integer from 1"),
    ("tune-workers-huge", "tune --workers 1000", "workers: 1000 must be an integer from 1"),
    # tune: search spaces
    ("space-missing", "tune --space nowhere.yaml", "nowhere.yaml: no such search-space"),
    ("space-folder", "tune --space afolder", "afolder: is a folder"),
    ("space-not-utf8", "tune --space latin1.yaml", "latin1.yaml: not UTF-8 text"),
    (
        "space-of-another-model",
        "tune --model fast_cnn --space search_spaces/fcn.yaml",
        "fcn.yaml: searches hidden, which --model fast_cnn ignores",
    ),
    ("space-bad-yaml", "tune --space bad_yaml.yaml", "bad_yaml.yaml: not valid YAML"),
    ("space-unknown-key", "tune --space unknown_key.yaml", "unknown_key.yaml: learning_rate:"),
    (
        "space-low-above-high",
        "tune --space low_high.yaml",
        "low_high.yaml: lr: `low <= high` must hold, but got (low=0.1, high=0.01)",
    ),
    ("space-unknown-type", "tune --space unknown_type.yaml", "unknown_type.yaml: lr:"),
    ("space-empty-choices", "tune --space empty_choices.yaml", "empty_choices.yaml: optimizer:"),
    ("space-log-of-zero", "tune --space log_zero.yaml", "log_zero.yaml: lr:"),
    ("space-width-huge", "tune --space wide.yaml", "wide.yaml: hidden: width: must be within"),
    ("space-step-inf", "tune --space step_inf.yaml", "step_inf.yaml: line 1: '.inf' is not a"),
    ("space-twice", "tune --space twice.yaml", "twice.yaml: line 3: 'lr' is given twice"),
    ("space-alias-bomb", "tune --space bomb.yaml", "bomb.yaml: line 2: an alias (*name)"),
    (
        "space-recipe-of-another-model",
        "tune --model study_cnn --space search_spaces/cnn.yaml",
        "cnn.yaml: starts from recipe fast_cnn, a fast_cnn; use --model fast_cnn",
    ),
    (
        "space-bad-enqueue",
        "tune --space bad_enqueue.yaml",
        "bad_enqueue.yaml: enqueue #1: lr: 5.0 is outside the space",
    ),
    (
        "space-families-one-objective",
        "tune --space search_spaces/frontier.yaml",
        "frontier.yaml: chooses the model per trial, which is for a frontier study: add "
        "--objectives val_acc,train_time_s",
    ),
    # tune: storages (checked after the data is loaded)
    (
        "storage-unknown-scheme",
        "tune --data-dir {data} --storage foo://bar",
        "storage foo://bar: unknown scheme 'foo'",
    ),
    (
        "storage-no-driver-scheme",
        "tune --data-dir {data} --storage nosuchdb://x/y",
        "storage nosuchdb://x/y: unknown scheme",
    ),
    (
        "storage-sqlite-missing-folder",
        "tune --data-dir {data} --storage sqlite:////nonexistent/dir/x.db",
        "storage sqlite:////nonexistent/dir/x.db: no folder /nonexistent/dir",
    ),
    (
        "storage-in-memory",
        "tune --data-dir {data} --storage sqlite://",
        "storage sqlite://: is an in-memory database, gone when this process ends",
    ),
    (
        "study-name-newline",
        ["tune", "--data-dir", "{data}", "--study-name", "two\nlines"],
        "study_name: 'two\\nlines' holds the control character '\\n'",
    ),
    (
        "study-name-escape",
        ["tune", "--data-dir", "{data}", "--study-name", "red\x1b[31m"],
        "holds the control character '\\x1b'",
    ),
    (
        "study-name-too-long",
        ["tune", "--data-dir", "{data}", "--study-name", "s" * 513],
        "study_name: 513 characters, more than the 512",
    ),
    (
        "storage-in-memory-named",
        "tune --data-dir {data} --storage sqlite:///:memory:",
        "is an in-memory database",
    ),
    (
        "storage-in-memory-uri-filename",
        "tune --data-dir {data} --storage sqlite:///file:s?mode=memory&uri=true",
        "is an in-memory database",
    ),
    (
        "storage-sqlite-a-folder",
        "tune --data-dir {data} --storage sqlite:///afolder",
        "storage sqlite:///afolder: afolder is a folder, not a database file",
    ),
    (
        "storage-sqlite-not-a-database",
        "tune --data-dir {data} --storage sqlite:///afile",
        "storage sqlite:///afile: afile is not an SQLite database",
    ),
    (
        "storage-malformed-host",
        "tune --data-dir {data} --storage postgresql://u:p@[::1:5432/x",
        "storage postgresql://(unreadable URL): is not a valid database URL",
    ),
    (
        "storage-malformed-port",
        "tune --data-dir {data} --storage mysql+pymysql://u@host:port/x",
        "is not a valid database URL",
    ),
    (
        "storage-sqlite-without-scheme",
        "tune --data-dir {data} --storage optuna.db",
        "write sqlite:///optuna.db",
    ),
    (
        "storage-postgres-unreachable",
        "tune --data-dir {data} --storage postgresql://nouser:pw@127.0.0.1:1/x",
        "storage postgresql://nouser@127.0.0.1:1/x: cannot be opened",
    ),
    (
        "storage-mysql-unreachable",
        "tune --data-dir {data} --storage mysql+pymysql://nouser@127.0.0.1:1/x",
        "storage mysql+pymysql://nouser@127.0.0.1:1/x: cannot be opened",
    ),
    (
        "storage-journal-missing-folder",
        "tune --data-dir {data} --storage /nonexistent/dir/journal.log",
        "storage /nonexistent/dir/journal.log: cannot be opened as a journal file",
    ),
    (
        "total-trials-on-journal",
        "tune --data-dir {data} --storage journal.log --total-trials 5",
        "total_trials needs an RDB storage",
    ),
    ("tune-data-dir-is-a-file", "tune --data-dir afile", "afile: is a file, not a folder"),
    # evaluate
    (
        "evaluate-no-store",
        "evaluate --data-dir {data} --model-uri models:/nothing@champion",
        "model 'models:/nothing@champion' not found: there is no tracking store",
    ),
    (
        "evaluate-bad-uri",
        "evaluate --data-dir {data} --model-uri nothing",
        "model URI 'nothing' is not runs:/",
    ),
    ("evaluate-data-dir-is-a-file", "evaluate --data-dir afile", "afile: is a file"),
    ("evaluate-unknown-option", "evaluate --bogus", "--bogus"),
    # replicate (--out: tests/test_report.py)
    ("replicate-seeds", "replicate --seeds -1", "seeds: -1 must be an integer from 0 to 100"),
    ("replicate-epochs", "replicate --epochs 10001", "epochs: 10001 must be an integer from 0"),
    ("replicate-cnn-epochs", "replicate --cnn-epochs -1", "cnn_epochs: -1 must be an integer"),
    ("replicate-workers", "replicate --workers 65", "workers: 65 must be an integer from 0"),
    ("replicate-quick-takes-no-value", "replicate --quick maybe", "unexpected extra argument"),
    ("replicate-data-dir-is-a-file", "replicate --data-dir afile", "afile: is a file"),
    ("replicate-out-is-a-file", "replicate --data-dir {data} --out afile", "--out afile is a file"),
    (
        "replicate-out-holds-a-users-files",
        "replicate --data-dir {data} --out notes",
        "--out notes holds files that replicate did not write (mine.txt)",
    ),
    (
        "replicate-from-results-into-a-users-folder",
        "replicate --from-results results.json --out notes",
        "--out notes holds files",
    ),
    # predict (a missing model: tests/test_predict.py)
    ("predict-nothing", "predict", "Missing argument"),
    ("predict-missing", "predict missing.png", "missing.png: no such file"),
    ("predict-not-an-image", "predict notes.png", "notes.png: not an image file Pillow can read"),
    ("predict-empty-folder", "predict afolder", "afolder: a folder without PNG or JPEG files"),
    ("predict-top-zero", "predict ok.png --top 0", "top: 0 must be an integer from 1 to 10"),
    ("predict-top-huge", "predict ok.png --top 11", "top: 11 must be an integer from 1 to 10"),
    ("predict-decompression-bomb", "predict big.png", "big.png: too many pixels"),
    # prepare
    ("prepare-data-dir-is-a-file", "prepare --data-dir afile", "afile: is a file, not a folder"),
    ("prepare-unknown-option", "prepare --bogus", "--bogus"),
    # dashboard
    (
        "dashboard-misspelled-store",
        "dashboard --storage sqlite:///misspeled.db",
        "storage sqlite:///misspeled.db: no such file misspeled.db",
    ),
    (
        "dashboard-in-memory",
        "dashboard --storage sqlite://",
        "storage sqlite://: an in-memory database holds no study",
    ),
    (
        "dashboard-missing-journal",
        "dashboard --storage nowhere.log",
        "storage nowhere.log: no such file",
    ),
    (
        "dashboard-port-negative",
        "dashboard --storage sqlite:///studies.db --port -1",
        "port: -1 must be an integer from 1 to 65535",
    ),
    (
        "dashboard-port-huge",
        "dashboard --storage sqlite:///studies.db --port 70000",
        "port: 70000 must be an integer from 1 to 65535",
    ),
    ("dashboard-port-text", "dashboard --port http", "'--port'"),
    (
        "dashboard-port-in-use",
        "dashboard --storage sqlite:///studies.db --port {busy}",
        "is in use",
    ),
]


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: Pillow judges the size before decoding."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def workspace(tmp_path) -> Path:
    """The files the cases name, in the working directory."""
    (tmp_path / "afile").write_text("a file, not a folder\n")
    (tmp_path / "afolder").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("a user's notes: replicate must not touch them\n")
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "studies.db").write_bytes(b"")  # SQLite reads an empty file as an empty database
    (tmp_path / "latin1.yaml").write_bytes("lr: 0.1  # d\xe9j\xe0 vu\n".encode("latin-1"))
    spaces = {
        "bad_yaml": "lr: {type: float, low: [1\n",
        "unknown_key": "learning_rate: {type: float, low: 0.1, high: 0.2}\n",
        "low_high": "lr: {type: float, low: 0.1, high: 0.01}\n",
        "unknown_type": "lr: {type: gaussian, low: 0.1, high: 0.2}\n",
        "empty_choices": "optimizer: {type: categorical, choices: []}\n",
        "log_zero": "lr: {type: float, low: 0.0, high: 0.1, log: true}\n",
        "wide": "hidden: {type: layers, depth: [1, 2], width: {low: 64, high: 100000}}\n",
        "bad_enqueue": SPACE + "enqueue:\n  - {lr: 5.0}\n",
        "step_inf": "lr: {type: float, low: 0.001, high: 0.01, step: .inf}\n",
        "twice": SPACE + SPACE,
        "bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
        ),
    }
    for name, text in spaces.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    (tmp_path / "search_spaces").symlink_to(ROOT / "search_spaces")
    (tmp_path / "notes.png").write_text("not an image")
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "big.png").write_bytes(png_claiming(15_000, 15_000))
    return tmp_path


def files_under(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


def assert_one_line_and_nothing_written(folder: Path, before: set[Path], out, message: str):
    """Exit 2, one `error:` line containing `message`, and no new file but an empty study
    storage (opening the default SQLite storage creates it: it then holds no study)."""
    import optuna

    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and message in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    new = files_under(folder) - before
    if Path("optuna.db") in new:
        assert optuna.get_all_study_summaries(f"sqlite:///{folder / 'optuna.db'}") == []
        new.remove(Path("optuna.db"))
    assert not new, f"written: {sorted(map(str, new))}"


@pytest.fixture
def busy_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def argv(line: str | list[str], **values: object) -> list[str]:
    words = line if isinstance(line, list) else line.split()
    return [w.format(**values) for w in words]


def test_the_list_covers_every_command():
    assert len(CASES) >= 30
    assert {argv(c[1], data="", busy="")[0] for c in CASES} == {
        "train",
        "tune",
        "evaluate",
        "replicate",
        "predict",
        "prepare",
        "dashboard",
    }


@pytest.mark.parametrize("line, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(line, message, workspace, command, request):
    values = {}
    if "{data}" in str(line):
        values["data"] = request.getfixturevalue("data_dir")
    if "{busy}" in str(line):
        values["busy"] = request.getfixturevalue("busy_port")
    before = files_under(workspace)
    out = command(*argv(line, **values))
    assert_one_line_and_nothing_written(workspace, before, out, message)


def test_ctrl_c_stops_the_dashboard_without_mentioning_runs(workspace, command, monkeypatch):
    import optuna
    import optuna_dashboard

    optuna.create_study(storage=f"sqlite:///{workspace / 'studies.db'}", study_name="s")

    def interrupted(*args, **kwargs):
        raise interrupt.Interrupted("stopped by signal SIGINT")

    monkeypatch.setattr(optuna_dashboard, "run_server", interrupted)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = command("dashboard", "--storage", "sqlite:///studies.db", "--port", str(port))
    assert out.returncode == 0, out.stderr
    assert "KILLED" not in out.stdout + out.stderr and "Traceback" not in out.stderr
    assert out.stdout.strip().splitlines()[-1] == "optuna-dashboard stopped"
