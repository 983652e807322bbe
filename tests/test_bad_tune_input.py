"""Bad input to `tune`, as a user types it: one line naming the problem, exit 2, no traceback,
and nothing written: no study, no trial, no MLflow run, no store file, the data cache as it was.

The command runs in this process through the same `main()` a user's shell reaches (a subprocess
per case would spend most of its time importing torch); stderr is captured at the file
descriptor, so a library's warning or traceback would show. test_cli.py runs tune as a real
subprocess too.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import mlflow
import optuna
import pytest

from pipeline.cli import app as cli

from pipeline.core import data

SPACE = "lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\nbatch_size: 512\n"

# (id, extra args, search-space text or None for the default space, expected part of the line)
CASES = [
    ("model", ["--model", "vgg"], None, "'--model'"),
    ("n-trials-negative", ["--n-trials", "-1"], None, "n_trials: -1 must be >= 0"),
    ("n-trials-not-a-number", ["--n-trials", "many"], None, "'--n-trials'"),
    ("epochs-negative", ["--epochs", "-3"], None, "epochs: -3 must be >= 0"),
    ("timeout-negative", ["--timeout", "-5"], None, "timeout: -5.0 must be >= 0"),
    ("seed-negative", ["--seed", "-1"], None, "seed: -1 must be >= 0"),
    ("never-ends", ["--n-trials", "0", "--timeout", "0"], None, "the study would never end"),
    ("total-trials-negative", ["--total-trials", "-2"], None, "total_trials: -2 must be >= 0"),
    ("heartbeat-negative", ["--heartbeat", "-1"], None, "heartbeat: -1 must be >= 0"),
    ("grace-below-heartbeat", ["--heartbeat", "60", "--grace-period", "30"], None,
     "grace_period: 30 must be greater than heartbeat (60)"),
    ("pruner", ["--pruner", "random"], None, "'--pruner'"),
    ("space-missing", ["--space", "nowhere.yaml"], None, "nowhere.yaml: no such search-space"),
    ("space-bad-yaml", [], "lr: {type: float, low: [1\n", "space.yaml: not valid YAML"),
    ("space-unknown-key", [], "learning_rate: {type: float, low: 0.1, high: 0.2}\n",
     "space.yaml: learning_rate:"),
    ("space-low-above-high", [], "lr: {type: float, low: 0.1, high: 0.01}\n",
     "space.yaml: lr: low (0.1) is greater than high (0.01)"),
    ("space-unknown-type", [], "lr: {type: gaussian, low: 0.1, high: 0.2}\n",
     "space.yaml: lr:"),
    ("space-empty-choices", [], "optimizer: {type: categorical, choices: []}\n",
     "space.yaml: optimizer:"),
    ("space-log-of-zero", [], "lr: {type: float, low: 0.0, high: 0.1, log: true}\n",
     "space.yaml: lr:"),
    ("space-bad-enqueue", [], SPACE + "enqueue:\n  - {lr: 5.0}\n",
     "space.yaml: enqueue #1: lr: 5.0 is outside the space"),
    ("storage-unknown-scheme", ["--storage", "foo://bar"], None,
     "storage foo://bar: unknown scheme 'foo'"),
    ("storage-no-driver-scheme", ["--storage", "nosuchdb://x/y"], None,
     "storage nosuchdb://x/y: unknown scheme"),
    ("storage-sqlite-missing-folder", ["--storage", "sqlite:////nonexistent/dir/x.db"], None,
     "storage sqlite:////nonexistent/dir/x.db: cannot be opened"),
    ("storage-sqlite-without-scheme", ["--storage", "optuna.db"], None,
     "write sqlite:///optuna.db"),
    ("storage-postgres-unreachable", ["--storage", "postgresql://nouser:pw@127.0.0.1:1/x"],
     None, "storage postgresql://nouser:***@127.0.0.1:1/x: cannot be opened"),
    ("storage-mysql-unreachable", ["--storage", "mysql+pymysql://nouser@127.0.0.1:1/x"], None,
     "storage mysql+pymysql://nouser@127.0.0.1:1/x: cannot be opened"),
    ("storage-journal-missing-folder", ["--storage", "/nonexistent/dir/journal.log"], None,
     "storage /nonexistent/dir/journal.log: cannot be opened as a journal file"),
    ("workers-zero", ["--workers", "0"], None, "workers: 0 must be >= 1"),
    ("total-trials-on-journal", ["--storage", "journal.log", "--total-trials", "5"], None,
     "total_trials needs an RDB storage"),
]


@pytest.fixture
def tune(tmp_path, tracking_env, monkeypatch, capfd):
    """`python -m pipeline tune ARGS` from tmp_path: its exit code and stderr."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, env: dict[str, str] | None = None) -> SimpleNamespace:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "argv", ["pipeline", "tune", *args])
        capfd.readouterr()
        with pytest.raises(SystemExit) as exit:
            cli.main()
        return SimpleNamespace(returncode=exit.value.code, stderr=capfd.readouterr().err)
    return run


def assert_nothing_written(tmp_path, out, message):
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and message in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no tracking store, so no run
    assert not (tmp_path / "journal.log").exists()
    if (tmp_path / "optuna.db").exists():  # the storage was fine: it holds no study
        assert optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'optuna.db'}") == []


@pytest.mark.parametrize("args, space, message", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_tune_input_is_one_line_and_writes_nothing(args, space, message, tmp_path, tune,
                                                       data_dir):
    if space is not None:
        (tmp_path / "space.yaml").write_text(space)
        args = ["--space", "space.yaml", *args]
    out = tune("--data-dir", str(data_dir), *args)
    assert_nothing_written(tmp_path, out, message)


def test_a_study_that_minimizes_is_refused_and_left_alone(tmp_path, tune, data_dir):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="fcn", storage=storage, direction="minimize")
    out = tune("--data-dir", str(data_dir), "--storage", storage)
    assert_nothing_written(tmp_path, out, "study 'fcn' in sqlite:///")
    assert "exists with direction MINIMIZE" in out.stderr
    [study] = optuna.get_all_study_summaries(storage)
    assert study.direction.name == "MINIMIZE" and study.n_trials == 0


def test_a_corrupted_data_cache_says_how_to_fix_it(tmp_path, tune):
    folder = tmp_path / "data"
    folder.mkdir()
    cache = folder / data.CACHE_NAME
    cache.write_bytes(b"garbage, not a torch file")
    out = tune("--data-dir", str(folder))
    assert_nothing_written(tmp_path, out, f"the data cache {cache} is corrupt")
    assert "delete" in out.stderr and "prepare" in out.stderr
    assert cache.read_bytes() == b"garbage, not a torch file"


@pytest.mark.parametrize("uri, message", [
    ("http://127.0.0.1:1", "MLflow tracking server http://127.0.0.1:1 does not answer"),
    ("foo://nowhere", "MLFLOW_TRACKING_URI foo://nowhere: unusable"),
])
def test_a_bad_tracking_uri_is_one_line_and_creates_no_study(uri, message, tmp_path, tune,
                                                             data_dir):
    mlflow.set_tracking_uri(uri)  # tracking_env set its own store in this process too
    out = tune("--data-dir", str(data_dir), env={"MLFLOW_TRACKING_URI": uri})
    assert_nothing_written(tmp_path, out, message)


def test_a_database_lost_as_a_trial_reports_is_one_line(tmp_path, tune, data_dir, monkeypatch):
    """The database goes away as a finished trial reports its value. Optuna 5.0 then fails again
    in _run_trial's own `finally` and raises an UnboundLocalError (optuna/optuna#5280) whose
    context holds the real error: the user still gets the one "lost the database" line."""
    from optuna.exceptions import StorageInternalError
    from optuna.storages import RDBStorage
    from sqlalchemy.exc import OperationalError

    gone = False
    set_state, get_trial = RDBStorage.set_trial_state_values, RDBStorage.get_trial

    def refuse() -> None:
        raise StorageInternalError("An exception is raised during the commit.") from \
            OperationalError("UPDATE trials", {}, ConnectionRefusedError("connection refused"))

    def set_trial_state_values(self, trial_id, state, values=None):
        nonlocal gone
        gone = gone or state.is_finished()
        return refuse() if gone else set_state(self, trial_id, state, values)

    def lost_get_trial(self, trial_id):
        return refuse() if gone else get_trial(self, trial_id)

    monkeypatch.setattr(RDBStorage, "set_trial_state_values", set_trial_state_values)
    monkeypatch.setattr(RDBStorage, "get_trial", lost_get_trial)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    out = tune("--data-dir", str(data_dir), "--storage", storage, "--n-trials", "1",
               "--epochs", "1")
    assert gone
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: storage {storage}: lost the database (") and \
        "connection refused" in last and "run the same command again" in last, out.stderr
    assert "Traceback" not in out.stderr and "UnboundLocalError" not in out.stderr
