"""Bad input to `tune` that needs more than a command line: an existing study, a corrupt data
cache, a bad tracking URI, a database lost mid-study. One line naming the problem, exit 2, no
traceback, and nothing written. (Bad values of tune's options: tests/test_bad_input.py.)

The command runs in this process through the same `main()` a user's shell reaches.
"""

from __future__ import annotations

import mlflow
import optuna
import pytest

from pipeline.core import data
from pipeline.tuning.space import load_space
from pipeline.tuning.workers import resume


@pytest.fixture
def tune(command):
    """`python -m pipeline tune ARGS` from tmp_path: its exit code and stderr."""
    return lambda *args, env=None: command("tune", *args, env=env)


def assert_nothing_written(tmp_path, out, message):
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and message in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no tracking store, so no run
    assert not (tmp_path / "journal.log").exists()
    if (tmp_path / "optuna.db").exists():  # the storage was fine: it holds no study
        assert optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'optuna.db'}") == []


def test_a_study_that_minimizes_is_refused_and_left_alone(tmp_path, tune, data_dir):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="fcn", storage=storage, direction="minimize")
    out = tune("--data-dir", str(data_dir), "--storage", storage)
    assert_nothing_written(tmp_path, out, "study 'fcn' in sqlite:///")
    assert "exists with direction MINIMIZE" in out.stderr
    [study] = optuna.get_all_study_summaries(storage)
    assert study.direction.name == "MINIMIZE" and study.n_trials == 0


@pytest.mark.parametrize(
    "before, after, message",
    [
        (
            "{type: float, low: 0.001, high: 0.01}",
            "{type: categorical, choices: [0.001, 0.01]}",
            "searched lr as a float in [0.001, 0.01]; space.yaml makes it one of [0.001, 0.01]",
        ),
        (
            "{type: float, low: 0.001, high: 0.01}",
            "{type: float, low: 0.001, high: 0.01, log: true}",
            "searched lr as a float in [0.001, 0.01]; space.yaml makes it a float in "
            "[0.001, 0.01] on a log scale",
        ),
        (
            "{type: categorical, choices: [0.001, 0.01]}",
            "{type: categorical, choices: [0.01, 0.1]}",
            "searched lr as one of [0.001, 0.01]; space.yaml makes it one of [0.01, 0.1]",
        ),
    ],
)
def test_a_study_resumed_with_a_parameter_of_another_kind_is_refused(
    before, after, message, tmp_path, tune, data_dir
):
    """Optuna would fail the first trial that suggests it (a traceback, a FAILED parent run)."""
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    space = tmp_path / "space.yaml"
    space.write_text(f"lr: {before}\nbatch_size: 512\n")
    asked = resume.distributions(load_space(space), epochs=1)
    params = {"lr": next(iter(getattr(asked["lr"], "choices", [0.005])))}
    study = optuna.create_study(study_name="fcn", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(params=params, distributions=asked, value=0.5))
    space.write_text(f"lr: {after}\nbatch_size: 512\n")
    out = tune("--data-dir", str(data_dir), "--storage", storage, "--space", str(space))
    assert_nothing_written(tmp_path, out, f"study 'fcn' in {storage} {message}")
    assert [s.n_trials for s in optuna.get_all_study_summaries(storage)] == [1]


def test_a_corrupted_data_cache_says_how_to_fix_it(tmp_path, tune):
    folder = tmp_path / "data"
    folder.mkdir()
    cache = folder / data.CACHE_NAME
    cache.write_bytes(b"garbage, not a torch file")
    out = tune("--data-dir", str(folder))
    assert_nothing_written(tmp_path, out, f"the data cache {cache} is corrupt")
    assert "delete" in out.stderr and "prepare" in out.stderr
    assert cache.read_bytes() == b"garbage, not a torch file"


@pytest.mark.parametrize(
    "uri, message",
    [
        ("http://127.0.0.1:1", "MLflow tracking server http://127.0.0.1:1 does not answer"),
        ("foo://nowhere", "MLFLOW_TRACKING_URI foo://nowhere: unusable"),
    ],
)
def test_a_bad_tracking_uri_is_one_line_and_creates_no_study(
    uri, message, tmp_path, tune, data_dir
):
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
        raise StorageInternalError(
            "An exception is raised during the commit."
        ) from OperationalError("UPDATE trials", {}, ConnectionRefusedError("connection refused"))

    def set_trial_state_values(self, trial_id, state, values=None):
        nonlocal gone
        gone = gone or state.is_finished()
        return refuse() if gone else set_state(self, trial_id, state, values)

    def lost_get_trial(self, trial_id):
        return refuse() if gone else get_trial(self, trial_id)

    monkeypatch.setattr(RDBStorage, "set_trial_state_values", set_trial_state_values)
    monkeypatch.setattr(RDBStorage, "get_trial", lost_get_trial)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    space = tmp_path / "narrow.yaml"  # a trial of seconds (the default space's is 1024-512)
    space.write_text(
        "lr: {type: float, low: 1.0e-3, high: 1.0e-2}\nhidden: [32]\nbatch_size: 512\n"
    )
    out = tune(
        *("--data-dir", str(data_dir), "--storage", storage, "--space", str(space)),
        *("--n-trials", "1", "--epochs", "1"),
    )
    assert gone, out.stderr
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert (
        last.startswith(f"error: storage {storage}: lost the database (")
        and "connection refused" in last
        and "run the same command again" in last
    ), out.stderr
    assert "Traceback" not in out.stderr and "UnboundLocalError" not in out.stderr
