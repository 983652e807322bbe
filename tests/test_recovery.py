"""Dead workers' trials: failed, their runs closed KILLED, run again; stop requests honoured.

A worker's death on this host is seen at once (its pid is gone); the trial needs no grace
period. A dead pid comes from a short subprocess that has been reaped.
"""

import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta

import mlflow
import optuna
import pytest

from pipeline.core import interrupt
from pipeline.tracking import orphans
from pipeline.tuning import summary
from pipeline.tuning.attrs import CLAIMED_BY_ATTR, CLAIMED_START_ATTR, RUN_ID_ATTR, WORKER_ATTR
from pipeline.tuning.search.sampler import open_study
from pipeline.tuning.study import TrialStopped, pause, run_trials, stopped_line, tune
from pipeline.tuning.workers import recovery

# Trials started by hand (study.ask) have no heartbeat thread: Optuna says so, and it is fine.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def running_trial(study: optuna.Study, s, worker: str) -> optuna.Trial:
    """A trial that a worker started: params sampled, an MLflow run open, the worker named."""
    trial = study.ask()
    s.space.sample(trial, model=s.model, epochs=s.epochs, seed=s.seed)
    run = mlflow.MlflowClient().create_run(
        mlflow.get_experiment_by_name("tests").experiment_id, tags={"trial_number": "0"}
    )
    trial.set_user_attr(RUN_ID_ATTR, run.info.run_id)
    trial.set_user_attr(WORKER_ATTR, worker)
    return trial


@pytest.fixture
def no_summary(monkeypatch):
    monkeypatch.setattr(summary, "log_study", lambda *args: None)


def test_a_dead_local_worker_s_trial_is_retried_at_once(settings, tiny_data, no_summary):
    s = settings(n_trials=1)  # heartbeat 60 s, grace period 180 s: far too long to wait for
    study = open_study(s)
    running_trial(study, s, f"{socket.gethostname()}:{dead_pid()}")
    tune(s, tiny_data, study)
    trials = study.trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].params == trials[0].params
    run = mlflow.get_run(trials[0].user_attrs[RUN_ID_ATTR])
    assert run.info.status == "KILLED"
    assert "has died" in run.data.tags["trial_reason"]


def test_live_and_other_hosts_workers_are_left_alone(settings):
    s = settings()
    study = open_study(s)
    running_trial(study, s, f"{socket.gethostname()}:{os.getpid()}")  # alive: this process
    running_trial(study, s, f"another-host:{dead_pid()}")  # only heartbeats can tell
    running_trial(study, s, f"{socket.gethostname()}:{dead_pid()}")
    assert recovery.fail_dead_local_trials(study) == [2]
    assert recovery.fail_dead_local_trials(study) == []  # a second look finds it done
    assert [t.state.name for t in study.trials] == ["RUNNING", "RUNNING", "FAIL", "WAITING"]


@pytest.fixture
def stop_requests():
    interrupt.reset()
    yield
    interrupt.reset()


def swallowed_stop_request() -> None:
    """A SIGTERM whose KeyboardInterrupt got lost (a garbage-collection callback ate it)."""
    try:
        interrupt._handle(signal.SIGTERM, None)
    except KeyboardInterrupt:
        pass


def test_a_stop_request_ends_the_study_loop_before_the_next_trial(settings, stop_requests):
    s = settings(n_trials=3)
    study = open_study(s)

    def objective(trial):
        swallowed_stop_request()
        return 0.5

    with pytest.raises(interrupt.Interrupted, match="SIGTERM"):
        run_trials(study, objective, s)
    assert [t.state.name for t in study.trials] == ["COMPLETE"]


def test_a_wait_ends_on_a_stop_request(stop_requests):
    swallowed_stop_request()
    with pytest.raises(interrupt.Interrupted):
        pause(600)


def test_a_trial_whose_worker_never_began_it_is_retried_after_the_grace_period(settings):
    """A database restart can take a worker between Optuna's creating a trial and its first
    heartbeat: such a trial is never stale to Optuna, and a full study waited on it forever."""
    s = settings()
    study = open_study(s)
    study.ask()  # created, then its worker was lost: no heartbeat, no worker named
    running_trial(study, s, f"{socket.gethostname()}:{os.getpid()}")  # began: left alone
    assert recovery.fail_unstarted_trials(study, grace_period=3600) == []  # not yet
    assert recovery.fail_unstarted_trials(study, grace_period=0) == [0]
    assert [t.state.name for t in study.trials] == ["FAIL", "RUNNING", "WAITING"]
    assert study.trials[2].user_attrs["retry_of"] == 0


STORAGES = {
    "sqlite": lambda tmp: f"sqlite:///{tmp / 'optuna.db'}",
    "journal": lambda tmp: str(tmp / "journal.log"),
}


def claimed_study(tmp_path, storage: str, queued: bool) -> optuna.Study:
    from pipeline.tuning.workers.storage import make_storage

    study = optuna.create_study(
        study_name="claims", storage=make_storage(STORAGES[storage](tmp_path)), direction="maximize"
    )
    if queued:
        study.enqueue_trial({"x": 1.0})
    return study


@pytest.mark.parametrize("queued", [False, True], ids=["fresh", "queued"])
@pytest.mark.parametrize("storage", STORAGES)
def test_a_trial_names_the_process_that_took_it_as_it_is_taken(tmp_path, storage, queued):
    trial = claimed_study(tmp_path, storage, queued).ask()
    attrs = trial.study.trials[trial.number].user_attrs
    assert attrs[CLAIMED_BY_ATTR] == f"{socket.gethostname()}:{os.getpid()}"
    assert attrs[CLAIMED_START_ATTR] == orphans.process_start(os.getpid())


TAKE_AND_WAIT = """
import signal, sys
import optuna
from pipeline.tuning.workers.storage import make_storage
study = optuna.load_study(study_name="claims", storage=make_storage(sys.argv[1]))
print(study.ask().number, flush=True)
signal.pause()  # killed here, before any objective could name its worker
"""


@pytest.mark.parametrize("queued", [False, True], ids=["fresh", "queued"])
@pytest.mark.parametrize("storage", STORAGES)
def test_a_worker_killed_right_after_taking_a_trial_leaves_it_found_at_once(
    tmp_path, tracking_env, storage, queued
):
    """kill -9 between Optuna's creating (or dequeuing) a trial and the objective's first line:
    the trial was RUNNING with no worker through every later `tune`, and no summary counted it."""
    study = claimed_study(tmp_path, storage, queued)
    worker = subprocess.Popen(
        [sys.executable, "-c", TAKE_AND_WAIT, STORAGES[storage](tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=tracking_env,
    )
    number = int(worker.stdout.readline())
    worker.kill()
    worker.wait()
    assert [t.state.name for t in study.trials] == ["RUNNING"]
    assert summary.summary(study).startswith(
        "study claims: 1 trials (0 complete, 0 pruned, 0 fail, 1 running)"
    )
    assert recovery.fail_dead_local_trials(study) == [number]
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]


def add_running(study: optuna.Study, **attrs) -> None:
    """A RUNNING trial as another process left it an hour ago (`attrs` its user attrs)."""
    left = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, user_attrs=attrs)
    left.datetime_start = datetime.now() - timedelta(hours=1)
    study.add_trial(left)


@pytest.mark.parametrize(
    "left",
    [
        {WORKER_ATTR: "HERE:DEAD"},  # its worker died mid-trial
        {CLAIMED_BY_ATTR: "HERE:DEAD"},  # its taker died before naming the worker
        {},  # taken by a process of another host, or of an older version: after the grace
    ],
    ids=["dead worker", "dead taker", "nobody, past the grace period"],
)
def test_the_next_tune_recovers_a_trial_left_running_before_its_own_trials(
    settings, tiny_data, no_summary, left
):
    s = settings(n_trials=1)  # grace period 180 s
    study = open_study(s)
    here = f"{socket.gethostname()}:{dead_pid()}"
    add_running(study, **{key: value.replace("HERE:DEAD", here) for key, value in left.items()})
    tune(s, tiny_data, study)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert study.trials[1].user_attrs["retry_of"] == 0


def test_the_summary_counts_trials_not_finished_only_when_there_are_some(settings):
    study = open_study(settings())
    assert (
        summary.summary(study).splitlines()[0] == "study s: 0 trials (0 complete, 0 pruned, 0 fail)"
    )
    study.enqueue_trial({"lr": 1e-3})
    add_running(study)
    assert (
        summary.summary(study).splitlines()[0]
        == "study s: 2 trials (0 complete, 0 pruned, 0 fail, 1 running, 1 waiting)"
    )


def test_a_stop_mid_trial_fails_it_says_which_and_optuna_reports_nothing(
    settings, stop_requests, capfd
):
    s = settings(n_trials=3)
    study = open_study(s)

    def objective(trial):
        swallowed_stop_request()
        interrupt.check()  # as the training loop does after each batch

    with pytest.raises(TrialStopped) as stop:
        run_trials(study, objective, s)
    assert stop.value.number == 0 and [t.state.name for t in study.trials] == ["FAIL"]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "failed with" not in err, err


@pytest.mark.parametrize(
    "stop, helpers, line",
    [
        (
            TrialStopped("stopped by signal SIGHUP", 4),
            False,
            "interrupted (stopped by signal SIGHUP) trial 4 ended FAIL and its MLflow run KILLED; "
            "run the same command again to resume the study",
        ),
        (
            interrupt.Interrupted("stopped by signal SIGTERM"),
            False,
            "interrupted (stopped by signal SIGTERM) between trials: no trial of this worker was "
            "running; run the same command again to resume the study",
        ),
        (
            interrupt.Interrupted("stopped by signal SIGINT"),
            True,
            "interrupted (stopped by signal SIGINT) between trials: no trial of this worker was "
            "running; its helper workers' running trials end FAIL too; run the same command "
            "again to resume the study",
        ),
    ],
    ids=["mid-trial", "between trials", "between trials, with helpers"],
)
def test_the_stop_line_says_what_the_stop_ended(stop, helpers, line):
    assert stopped_line(stop, helpers) == line
