"""`tune`: run (or resume) an Optuna study inside one parent MLflow run; each trial a nested run.

`tune(settings, data)` opens the study in its storage (tuning/search/sampler.py), runs trials until
`n_trials` / `timeout` or until the study holds `total_trials`, and logs the study to the
worker's parent run (tuning/summary.py), registering the best trial's model as `champion`
(tuning/registry/champion.py).

Many workers (processes, machines) cooperate through Optuna's own distributed mode: each calls
`tune` with the same RDB storage and study name. Each worker has its own parent run; a trial's
child run sits under the parent of the worker that ran it. A trial whose worker died is failed,
its MLflow runs closed KILLED, and queued once more (tuning/workers/recovery.py): at once when the
worker ran on this host, after the heartbeat grace period otherwise.

A stop request (core/interrupt.py: Ctrl-C, SIGTERM, a closed terminal) stops `tune` within
seconds at any point: the training loop checks for one after every batch, and the loop here
between trials and while waiting. A trial it stops ends FAIL, and the exception says which
(`TrialStopped`); `stopped_line` is the one line the command prints for it. Optuna's own report
of that failure (the trial's params and a traceback of the stop) is dropped.
"""

from __future__ import annotations

import contextlib
import gc
import time
import warnings

import mlflow
import optuna

from pipeline.core import interrupt
from pipeline.core.data import FashionMNIST
from pipeline.core.training import Diverged
from pipeline.tracking import lifecycle
from pipeline.tuning import summary
from pipeline.tuning.registry import logged_models
from pipeline.tuning.search.objective import make_objective
from pipeline.tuning.search.sampler import open_study
from pipeline.tuning.tune_settings import TuneSettings
from pipeline.tuning.workers import recovery
from pipeline.tuning.workers.optuna_private import StudyFull, quiet_stopped_trials
from pipeline.tuning.workers.processes import Helpers
from pipeline.tuning.workers.ray_tasks import RayTasks  # imports Ray only when it runs


class TrialStopped(interrupt.Interrupted):
    """A stop request that arrived while trial `number` ran: the trial ended FAIL."""

    def __init__(self, message: str, number: int):
        super().__init__(message)
        self.number = number


quiet_stopped_trials()


def stopped_line(stop: KeyboardInterrupt, helpers: bool = False) -> str:
    """What `tune` prints when a stop request ended it: which trial it ended FAIL, if any."""
    others = "; its helper workers' running trials end FAIL too" if helpers else ""
    if isinstance(stop, TrialStopped):
        done = f"trial {stop.number} ended FAIL and its MLflow run KILLED{others}"
    else:
        done = f"between trials: no trial of this worker was running{others}"
    return f"interrupted ({stop}) {done}; run the same command again to resume the study"


def named_stops(objective):
    """`objective`, whose stop requests say which trial they ended (TrialStopped)."""

    def run(trial: optuna.Trial):
        try:
            return objective(trial)
        except TrialStopped:
            raise
        except KeyboardInterrupt as e:
            raise TrialStopped(str(e) or "interrupted (Ctrl-C)", trial.number) from None

    return run


def tune(
    settings: TuneSettings,
    data: FashionMNIST,
    study: optuna.Study | None = None,
    helpers: Helpers | RayTasks | None = None,
) -> optuna.Study:
    """Run the study inside one parent MLflow run (the active one under `mlflow run`), with
    `helpers` (more worker processes of this call, or its Ray tasks, which leave this process
    only the waiting) nesting their trials under it. The study's summary and the champion's
    registration come once every worker has ended."""
    study = study or open_study(settings)
    study_tags = logged_models.study_tags(settings, study)
    deadline = None if settings.timeout is None else time.monotonic() + settings.timeout
    if settings.helper_of:  # trials go where the main worker's run is (`mlflow run` picks it)
        parent = mlflow.MlflowClient().get_run(settings.helper_of)
        mlflow.set_experiment(experiment_id=parent.info.experiment_id)
        run_trials(
            study,
            make_objective(
                settings, data, study_tags, settings.helper_of, own_parent=False, deadline=deadline
            ),
            settings,
            deadline,
        )
        return study
    with lifecycle.tracked_run(
        f"tune {settings.study_name}", tags={**study_tags, "tune_parent": "true"}
    ) as run:
        lifecycle.log_new_params(settings.params())
        mlflow.log_artifact(str(settings.space.path))
        objective = make_objective(settings, data, study_tags, run.info.run_id, deadline=deadline)
        with helpers.running(run.info.run_id) if helpers else contextlib.nullcontext():
            if helpers is None or helpers.main_trains:  # Ray's driver only waits
                run_trials(study, objective, settings, deadline)
            if helpers:
                helpers.wait()
        summary.log_study(study, settings, data)
    return study


def run_trials(
    study: optuna.Study, objective, settings: TuneSettings, deadline: float | None = None
) -> None:
    """Run trials one at a time until n_trials / the `deadline` (time.monotonic), or until the
    study is full.

    Before each trial: a stop request ends the loop, and trials of dead workers on this host
    (and trials not begun for the grace period) are failed and queued again. A full study may
    still owe trials: one whose worker died on another host comes back as a queued retry once
    its heartbeat is `grace_period` old. So a worker that finds the study full waits for the
    other workers' running trials to end (or be found dead) and runs any retry they leave.

    gc_after_trial frees a trial's reference cycles (its model, optimizer, figures) with a full
    collection, which walks every live object: with torch, MLflow and matplotlib loaded, 0.55 s
    a trial on a 2-core EPYC. What lives after the first trial (modules and what they cache, the
    data, the study) lives to the end of the loop: frozen (gc.freeze), later collections walk
    only what later trials make; unfrozen when the loop ends.
    """
    unfrozen = gc.get_freeze_count() == 0
    try:
        trial_loop(study, objective, settings, deadline)
    finally:
        if unfrozen:
            gc.unfreeze()


def trial_loop(
    study: optuna.Study, objective, settings: TuneSettings, deadline: float | None
) -> None:
    """run_trials' loop, the heap frozen after its first trial."""
    done = 0
    while settings.own_trials is None or done < settings.own_trials:
        interrupt.check()
        if deadline is not None and time.monotonic() >= deadline:
            return
        recovery.fail_dead_local_trials(study)
        recovery.fail_unstarted_trials(study, settings.grace_period)
        try:
            study.optimize(
                named_stops(objective), n_trials=1, catch=(Diverged,), gc_after_trial=True
            )
            if done == 0:
                gc.freeze()  # what lives now lives to the end of the loop (run_trials)
            done += 1
            continue
        except StudyFull:
            pass
        if not owes_trials(study, settings):
            return
    interrupt.check()


FULL_STUDY_POLL_S = 2.0  # how often a worker that finds the study full looks at it again


def owes_trials(study: optuna.Study, settings: TuneSettings) -> bool:
    """The study is full: is a trial queued, or may a running one still come back as a retry?
    Waits FULL_STUDY_POLL_S (at most a heartbeat) before saying a running one may."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    recovery.fail_unstarted_trials(study, settings.grace_period)
    states = {t.state for t in study.get_trials(deepcopy=False)}
    if optuna.trial.TrialState.WAITING in states:
        return True
    heartbeat = settings.heartbeat if "://" in settings.storage else None  # journal: none
    if not heartbeat or optuna.trial.TrialState.RUNNING not in states:
        return False
    # Look again soon: the other workers' last trials usually just end, and this worker (the
    # main one waits on it before the study's summary) should end with them, not a heartbeat
    # (60 s) later.
    pause(min(heartbeat, FULL_STUDY_POLL_S))
    return True


def pause(seconds: float) -> None:
    """Sleep `seconds` in short steps, raising at once on a stop request (interrupt.check)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        interrupt.check()
        time.sleep(min(left, 0.2))
    interrupt.check()
