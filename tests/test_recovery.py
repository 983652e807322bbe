"""Dead workers' trials: failed, their runs closed KILLED, run again; stop requests honoured.

A worker's death on this host is seen at once (its pid is gone); the trial needs no grace
period. A dead pid comes from a short subprocess that has been reaped.
"""

import os
import signal
import socket
import subprocess
import sys

import mlflow
import optuna
import pytest

from pipeline.core import interrupt
from pipeline.tuning import summary
from pipeline.tuning.attrs import RUN_ID_ATTR, WORKER_ATTR
from pipeline.tuning.search.sampler import open_study
from pipeline.tuning.study import pause, run_trials, tune
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
