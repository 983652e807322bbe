"""A trial whose worker died is failed, its MLflow runs are closed KILLED, and it runs again.

Three ways to find one, each ending in `retry(...)`:
- `StaleTrialHandler`: Optuna's stale-trial callback. A trial whose worker sent no heartbeat for
  the grace period (killed, machine lost) has just been failed by whichever worker noticed
  (Optuna looks before starting each trial). Works across hosts; RDB storages only.
- `fail_dead_local_trials(study)`: a RUNNING trial whose worker ran on THIS host and whose
  process is gone (pid and start time, tracking/orphans.py) is failed at once, without waiting
  for the grace period, and with any storage. `tune` calls it as a worker starts and between
  trials. A trial of another host is left to the heartbeats: from here nobody can tell a live
  process on another machine from a dead one.

  A trial whose worker died before naming itself names the process that created it or took
  it from the queue (`claim`, written with that step by tuning/workers/storage.py): the same
  check finds it.
- `fail_unstarted_trials(study, grace_period)`: a RUNNING trial that never named its worker
  (the first thing the objective does) for the grace period lost its worker between Optuna's
  creating it and our objective starting, typically to a database restart. Optuna's heartbeat
  check never finds it: a trial without a single heartbeat is never stale (RDBStorage's
  `_get_stale_trial_ids` skips it), so a full study waited for it forever. `tune` calls it
  before each trial and while a full study waits; it also covers a worker of another host.

`retry` queues the trial once more (its params, tagged `retry_of`); a retry that dies too is
not retried again.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from datetime import datetime, timedelta

import mlflow
import optuna

from pipeline.core.errors import first_line
from pipeline.tracking import orphans
from pipeline.tracking.tags import END_REASON, set_tags
from pipeline.tuning.attrs import (
    CLAIMED_BY_ATTR,
    CLAIMED_START_ATTR,
    PARENT_RUN_ID_ATTR,
    RETRY_OF_ATTR,
    RUN_ID_ATTR,
    TRIAL_REASON_TAG,
    TRIAL_STATE_TAG,
    WORKER_ATTR,
    WORKER_START_ATTR,
)

CLAIMED_ATTRS = (CLAIMED_BY_ATTR, CLAIMED_START_ATTR)


def this_worker() -> dict[str, str]:
    """The trial user attrs naming this process: host:pid and its start time."""
    return {
        WORKER_ATTR: f"{socket.gethostname()}:{os.getpid()}",
        WORKER_START_ATTR: orphans.process_start(os.getpid()),
    }


def claim() -> dict[str, str]:
    """The trial user attrs naming this process as the one that took a trial."""
    me = this_worker()
    return {CLAIMED_BY_ATTR: me[WORKER_ATTR], CLAIMED_START_ATTR: me[WORKER_START_ATTR]}


class StaleTrialHandler:
    """Optuna's stale-trial callback: close the dead trial's runs, then queue it once more."""

    def __init__(self, grace_period: int | None):
        self.grace_period = grace_period

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        retry(
            study, trial, f"its worker sent no heartbeat for {self.grace_period} s (killed or lost)"
        )


def retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str) -> None:
    """`trial` (already FAIL) lost its worker: close its MLflow runs KILLED, queue it again."""
    try:
        close_runs_of_dead_trial(study, trial, reason)
    except Exception as e:  # the tracking server's trouble must not stop this worker
        print(
            f"warning: could not close the MLflow run of dead trial {trial.number}: "
            f"{first_line(e)}",
            file=sys.stderr,
        )
    # FrozenTrial.set_user_attr changes this copy only: the retry inherits it.
    trial.set_user_attr(RETRY_OF_ATTR, trial.user_attrs.get(RETRY_OF_ATTR, trial.number))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, trial)


def close_runs_of_dead_trial(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str
) -> None:
    """The trial's run KILLED; so is its worker's parent run when no live trial needs it."""
    client = mlflow.MlflowClient()
    run_id = trial.user_attrs.get(RUN_ID_ATTR)
    if run_id:
        # Tagged even when closed already: a command's start may have closed it as an orphan
        # of a dead process (tracking/orphans.py), knowing nothing of its trial.
        set_tags(run_id, {TRIAL_STATE_TAG: "FAIL", TRIAL_REASON_TAG: reason}, client)
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "KILLED")
    parent_id = trial.user_attrs.get(PARENT_RUN_ID_ATTR)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if (
        parent_id
        and client.get_run(parent_id).info.status == "RUNNING"
        and not any(t.user_attrs.get(PARENT_RUN_ID_ATTR) == parent_id for t in running)
    ):
        set_tags(parent_id, {END_REASON: f"worker lost: trial {trial.number} {reason}"}, client)
        client.set_terminated(parent_id, "KILLED")


def dead_local_worker(trial: optuna.trial.FrozenTrial) -> str | None:
    """The trial's worker (host:pid; else the process that took it) when it ran on this host
    and its process is gone."""
    attrs = trial.user_attrs
    named = (WORKER_ATTR, WORKER_START_ATTR) if WORKER_ATTR in attrs else CLAIMED_ATTRS
    worker, start = (str(attrs.get(key, "")) for key in named)
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    return None if orphans.alive(int(pid), start) else worker


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """Fail and retry the RUNNING trials whose worker on this host has died; their numbers."""

    def reason(trial: optuna.trial.FrozenTrial) -> str | None:
        worker = dead_local_worker(trial)
        return worker and f"its worker {worker} on this host has died (killed or out of memory)"

    return fail_and_retry(study, reason)


def fail_unstarted_trials(study: optuna.Study, grace_period: float) -> list[int]:
    """Fail and retry the RUNNING trials that have not named their worker `grace_period`
    seconds after they started; their numbers."""
    now = datetime.now()

    def reason(trial: optuna.trial.FrozenTrial) -> str | None:
        started = trial.datetime_start
        if (
            WORKER_ATTR in trial.user_attrs
            or started is None
            or now - started < timedelta(seconds=grace_period)
        ):
            return None
        return f"its worker never started it in {grace_period:g} s (lost as it began)"

    return fail_and_retry(study, reason)


def fail_and_retry(study: optuna.Study, reason) -> list[int]:
    """Fail and retry each RUNNING trial for which `reason(trial)` gives a reason; their numbers.

    Workers may find the same dead trial together: only the one whose FAIL is stored retries
    it (the storage refuses to finish a trial twice)."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        why = reason(trial)
        if why is None:
            continue
        try:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            continue  # another worker failed it first, and retries it
        retry(study, study.trials[trial.number], why)
        failed.append(trial.number)
    return failed
