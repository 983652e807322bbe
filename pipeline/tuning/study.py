"""Optuna studies around the core: every trial is a `train` config and a nested MLflow run.

`tune(settings, data)` opens (or resumes) the study in its storage, runs trials until
`n_trials` / `timeout`, and logs the study to one parent MLflow run: best params and value, a
CSV of all trials, Optuna's plots, and the best trial's model registered as `champion`.

We open the MLflow runs ourselves instead of using Optuna's MLflowCallback: that callback calls
`set_experiment`, which clashes with the run `mlflow run` has already started (MLFLOW_RUN_ID), and
it logs a trial only after it ends, so per-epoch metrics and pruned trials would be lost.

Many workers (processes, machines) cooperate through Optuna's own distributed mode: each calls
`tune` with the same RDB storage and study name. Each worker has its own parent run; a trial's
child run sits under the parent of the worker that ran it. Running trials send heartbeats; a
trial whose worker died is failed by the next worker that starts a trial, its MLflow runs are
closed KILLED, and it is queued once more (`retry_of` tag). `total_trials` caps the study itself.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path

import mlflow
import optuna
import torch

from pipeline.tracking import log as tracklog

from pipeline.tracking import lifecycle
from pipeline.core.config import UserError, first_line
from pipeline.core.data import FashionMNIST
from pipeline.tuning.settings import TuneSettings
from pipeline.tuning.workers import Helpers
from pipeline.core.models import build_model
from pipeline.core.training import TEST_ACC, VAL_ACC, Diverged, EpochEnd

STATE_FILE = "model_state.pt"  # each completed trial's weights, to rebuild the champion later
RUN_ID_ATTR = "mlflow_run_id"
PARENT_RUN_ID_ATTR = "mlflow_parent_run_id"  # the worker's run: closed when the worker dies
RETRY_OF_ATTR = "retry_of"  # number of the trial whose dead worker this trial runs again
FAIL_REASON_ATTR = "fail_reason"
WORKER_ATTR = "worker"  # host:pid of the process that ran the trial
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")


class PruneOnValAcc:
    """Training callback: report val_acc each epoch; stop the trial when the pruner says so."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def __call__(self, end: EpochEnd) -> None:
        self.trial.report(end.metrics[VAL_ACC], end.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {end.epoch} "
                                     f"(val_acc {end.metrics[VAL_ACC]:.4f})")


class StudyFull(Exception):
    """The study holds `total_trials` trials: this worker starts no new one."""


class WorkerStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage plus what cooperating workers need: an exact study-wide trial cap,
    and heartbeats that outlive a database restart."""

    def __init__(self, url: str, max_trials: int | None = None, **kwargs):
        super().__init__(url, **kwargs)
        self.max_trials = max_trials

    def _get_prepared_new_trial(self, study_id, template_trial, session):
        # Optuna calls this with the study's row locked (SELECT ... FOR UPDATE) to number the
        # new trial. Counting under that lock is what makes the cap exact when workers race;
        # a callback that counts after each trial lets two workers both start the last one.
        # Queued trials (retries of dead workers' trials, start points) come with a template
        # and are never refused; a retry stands in for its failed trial, so it does not count.
        if self.max_trials is not None and template_trial is None:
            from optuna.storages._rdb import models

            trials = session.query(models.TrialModel).filter(
                models.TrialModel.study_id == study_id)
            retries = trials.join(models.TrialSystemAttributeModel).filter(
                models.TrialSystemAttributeModel.key == "failed_trial")
            if trials.count() - retries.count() >= self.max_trials:
                raise StudyFull(f"the study holds its {self.max_trials} trials")
        return super()._get_prepared_new_trial(study_id, template_trial, session)

    def record_heartbeat(self, trial_id: int) -> None:
        # Runs in Optuna's heartbeat thread, which an exception would end silently, and the
        # trial would then look dead. A missed beat while the database restarts is harmless:
        # the grace period spans several beats.
        try:
            super().record_heartbeat(trial_id)
        except Exception as e:
            print(f"warning: heartbeat skipped ({type(e).__name__}: "
                  f"{str(e).splitlines()[0][:120]})", file=sys.stderr)


def make_storage(url: str, heartbeat: int | None = None, grace_period: int | None = None,
                 max_trials: int | None = None) -> optuna.storages.BaseStorage:
    """An RDB URL (sqlite:///, postgresql://, mysql+pymysql://) or a journal file path.

    With `heartbeat`, running trials record a heartbeat that often; a trial silent for
    `grace_period` seconds is failed and retried once (RDB storages only: Optuna's journal
    storage has no heartbeat).
    """
    if "://" not in url:
        if Path(url).suffix in (".db", ".sqlite", ".sqlite3"):
            raise UserError(f"storage {url}: looks like an SQLite file but has no scheme; "
                            f"write sqlite:///{url} (or a .log path for a journal file)")
        if max_trials is not None:
            raise UserError(f"storage {url}: total_trials needs an RDB storage (sqlite:///..., "
                            "postgresql://...) that counts trials for all workers at once")
        return journal_storage(url)
    scheme = url.split("://")[0].split("+")[0]
    if scheme not in RDB_SCHEMES:
        raise UserError(f"storage {mask_password(url)}: unknown scheme {scheme!r}; use "
                        "sqlite:///FILE, postgresql://USER:PW@HOST/DB, mysql+pymysql://... "
                        "or a journal file path")
    engine_kwargs = {}
    if scheme != "sqlite":
        # pre-ping: a pooled connection that a database restart closed is replaced on checkout;
        # connect_timeout: an unreachable host is an error within seconds, not minutes.
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    callback = None
    if heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            callback = StaleTrialHandler(grace_period)
    from sqlalchemy.exc import IntegrityError

    attempts = 5
    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return WorkerStorage(url, max_trials=max_trials, engine_kwargs=engine_kwargs,
                                     heartbeat_interval=heartbeat,
                                     grace_period=grace_period if heartbeat else None,
                                     heartbeat_stale_trial_callback=callback)
        except IntegrityError:
            # Workers started together on a fresh database race to create Optuna's tables, then
            # again to stamp its alembic version (seen on PostgreSQL: a worker lost both races,
            # "duplicate key ... alembic_version"); a loser finds each step done on a later try.
            if attempt == attempts:
                raise
            time.sleep(random.uniform(0.05, 0.3) * attempt)  # de-synchronize the next try
        except Exception as e:  # bad driver, unreachable host, bad credentials, missing folder
            raise UserError(f"storage {mask_password(url)}: cannot be opened "
                            f"({type(e).__name__}: {first_line(e)})") from None


def journal_storage(path: str) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend

    try:
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    except Exception as e:  # a missing folder, a file that is not a journal
        raise UserError(f"storage {path}: cannot be opened as a journal file "
                        f"({type(e).__name__}: {first_line(e)})") from None


class StaleTrialHandler:
    """Optuna's stale-trial callback: a trial whose worker stopped sending heartbeats (killed,
    machine lost) has just been failed. Close its MLflow run (and its worker's parent run when
    no live trial needs it) as KILLED, then queue the trial once more, tagged `retry_of`.

    Runs in whichever worker notices: Optuna looks for stale trials before starting each trial.
    """

    def __init__(self, grace_period: int | None):
        self.grace_period = grace_period
        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            close_runs_of_dead_trial(study, trial, f"its worker sent no heartbeat for "
                                                  f"{self.grace_period} s (killed or lost)")
        except Exception as e:  # the tracking server's trouble must not stop this worker
            print(f"warning: could not close the MLflow run of dead trial {trial.number}: "
                  f"{first_line(e)}", file=sys.stderr)
        trial.set_user_attr(RETRY_OF_ATTR, trial.user_attrs.get(RETRY_OF_ATTR, trial.number))
        self.retry(study, trial)


def close_runs_of_dead_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial,
                             reason: str) -> None:
    client = mlflow.MlflowClient()
    run_id = trial.user_attrs.get(RUN_ID_ATTR)
    if run_id and client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, "trial_state", "FAIL")
        client.set_tag(run_id, "trial_reason", reason)
        client.set_terminated(run_id, "KILLED")
    parent_id = trial.user_attrs.get(PARENT_RUN_ID_ATTR)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if (parent_id and client.get_run(parent_id).info.status == "RUNNING"
            and not any(t.user_attrs.get(PARENT_RUN_ID_ATTR) == parent_id for t in running)):
        client.set_tag(parent_id, "end_reason", f"worker lost: trial {trial.number} {reason}")
        client.set_terminated(parent_id, "KILLED")


def mask_password(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def lost_storage(error: BaseException) -> BaseException | None:
    """The database error behind `error`, when the storage went away mid-study, else None.

    The whole chain is searched: when the database is gone, Optuna 5.0's `_run_trial` can fail
    again in its own `finally` block and raise an UnboundLocalError whose context holds the real
    error (optuna/optuna#5280)."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, (StorageInternalError, SQLAlchemyError)):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        # Wait for 5 finished trials and 3 epochs: early epochs of a slow starter look poor.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2)
    return optuna.pruners.NopPruner()


class TrialSeededTPE(optuna.samplers.TPESampler):
    """TPE whose random draws for trial k come from `seed + k`.

    So a resumed study continues the sequence instead of replaying its random start-up
    configurations, one call of 4 trials samples what two calls of 2 sample, and workers that
    start together do not all try the same configurations.
    """

    def __init__(self, seed: int, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.base_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._rng.rng.seed(self.base_seed + trial.number)
        self._random_sampler._rng.rng.seed(self.base_seed + trial.number)
        super().before_trial(study, trial)


def check_storage(settings: TuneSettings) -> optuna.storages.BaseStorage:
    """Open the storage and refuse a study of this name that minimizes; creates no study."""
    storage = make_storage(settings.storage, settings.heartbeat, settings.grace_period,
                           settings.total_trials)
    try:
        existing = optuna.load_study(study_name=settings.study_name, storage=storage)
    except KeyError:
        return storage
    if existing.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(f"study {settings.study_name!r} in {mask_password(settings.storage)} "
                        f"exists with direction {existing.direction.name}; tune maximizes "
                        "val_acc: choose another --study-name")
    return storage


def open_study(settings: TuneSettings,
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    storage = storage or check_storage(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # group: the FCN's depth changes which width params exist; multivariate TPE then
        # models each group of co-occurring params jointly.
        sampler = TrialSeededTPE(settings.seed, multivariate=True, group=True,
                                 n_startup_trials=6)
    kwargs = dict(study_name=settings.study_name, storage=storage, sampler=sampler,
                  pruner=make_pruner(settings.pruner))
    try:  # only the worker that creates the study queues its start points, even in a race
        study = optuna.create_study(direction="maximize", **kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([VAL_ACC])  # optuna-dashboard shows "val_acc", not "Objective 0"
    for params in settings.space.enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    return study


def make_objective(settings: TuneSettings, data: FashionMNIST, study_tags: dict[str, str],
                   parent_run_id: str, own_parent: bool = True):
    """`own_parent`: the parent run is this worker's, closed as KILLED if the worker dies (a
    helper's parent run is the main worker's, which lives on)."""
    def objective(trial: optuna.Trial) -> float:
        config = settings.space.sample(trial, model=settings.model, epochs=settings.epochs,
                                       seed=settings.seed)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        trial.set_user_attr(WORKER_ATTR, worker)
        tags = {**study_tags, "trial_number": str(trial.number), "trial_state": "RUNNING",
                WORKER_ATTR: worker}
        if RETRY_OF_ATTR in trial.user_attrs:
            tags[RETRY_OF_ATTR] = str(trial.user_attrs[RETRY_OF_ATTR])
        state, reason = "FAIL", None
        run_ids: list[str] = []

        def remember(run_id: str) -> None:
            # At once: the champion needs it, and so does whoever closes this run if we die.
            run_ids.append(run_id)
            trial.set_user_attr(RUN_ID_ATTR, run_id)
            if own_parent:
                trial.set_user_attr(PARENT_RUN_ID_ATTR, parent_run_id)

        try:
            run_id, result = tracklog.train_run(
                config, data, nested=True, parent_run_id=parent_run_id, tags=tags,
                run_name=f"trial {trial.number}",
                confusion=False,  # one per trial costs ~2 s; the champion gets one
                callbacks=(PruneOnValAcc(trial),), finished_on=(optuna.TrialPruned,),
                on_start=remember)
            with tempfile.TemporaryDirectory() as tmp:
                torch.save(result.model.state_dict(), Path(tmp) / STATE_FILE)
                mlflow.MlflowClient().log_artifact(run_id, str(Path(tmp) / STATE_FILE))
            trial.set_user_attr(TEST_ACC, result.final[TEST_ACC])  # reported, never selected
            state = "COMPLETE"
            return result.final[VAL_ACC]
        except optuna.TrialPruned as e:
            state, reason = "PRUNED", str(e)
            raise
        except Diverged as e:
            reason = str(e)
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
            raise
        except KeyboardInterrupt:
            reason = "interrupted (Ctrl-C)"
            raise
        finally:
            for run_id in run_ids:
                client = mlflow.MlflowClient()
                client.set_tag(run_id, "trial_state", state)
                if reason:
                    client.set_tag(run_id, "trial_reason", reason)

    return objective


def tune(settings: TuneSettings, data: FashionMNIST, study: optuna.Study | None = None,
         helpers: Helpers | None = None) -> optuna.Study:
    """Run the study inside one parent MLflow run (the active one under `mlflow run`), with
    `helpers` (more worker processes of this call) nesting their trials under it. The study's
    summary and the champion's registration come once every worker has ended."""
    study = study or open_study(settings)
    storage_shown = mask_password(settings.storage)
    study_tags = {"study_name": settings.study_name, "optuna_storage": storage_shown}
    if settings.helper_of:  # trials go where the main worker's run is (`mlflow run` picks it)
        parent = mlflow.MlflowClient().get_run(settings.helper_of)
        mlflow.set_experiment(experiment_id=parent.info.experiment_id)
        run_trials(study, make_objective(settings, data, study_tags, settings.helper_of,
                                         own_parent=False), settings)
        return study
    name = f"tune {settings.study_name}"
    resumed = bool(os.environ.get("MLFLOW_RUN_ID"))  # the run `mlflow run` has started
    mlflow.start_run(run_name=None if resumed else name,
                     tags={**study_tags, "tune_parent": "true"})
    if resumed:
        mlflow.set_tag("mlflow.runName", name)
    status = "FAILED"
    try:
        lifecycle.log_new_params(settings.params())
        mlflow.log_artifact(str(settings.space.path))
        run_id = mlflow.active_run().info.run_id
        objective = make_objective(settings, data, study_tags, run_id)
        with helpers.running(run_id) if helpers else contextlib.nullcontext():
            run_trials(study, objective, settings)
            if helpers:
                helpers.wait()
        log_study(study, settings, data)
        status = "FINISHED"
        return study
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow.end_run(status)


def run_trials(study: optuna.Study, objective, settings: TuneSettings) -> None:
    """Optimize until n_trials / timeout, or until the study is full.

    A full study may still owe trials: one whose worker died comes back as a queued retry once
    its heartbeat is `grace_period` old. So a worker that finds the study full waits for the
    other workers' running trials to end (or be found dead) and runs any retry they leave.
    """
    start = time.monotonic()
    heartbeat = settings.heartbeat if "://" in settings.storage else None  # journal: none
    while True:
        left = None if settings.timeout is None else settings.timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            return
        try:
            study.optimize(objective, n_trials=settings.own_trials, timeout=left,
                           catch=(Diverged,), gc_after_trial=True)
            return
        except StudyFull:
            pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        states = {t.state for t in study.get_trials(deepcopy=False)}
        if optuna.trial.TrialState.WAITING in states:
            continue
        if not heartbeat or optuna.trial.TrialState.RUNNING not in states:
            return
        time.sleep(heartbeat)


def log_study(study: optuna.Study, settings: TuneSettings, data: FashionMNIST) -> None:
    """Summary of the whole study (all workers, all calls) on the parent run."""
    from pipeline.tuning import plots as study_plots

    states = [t.state.name for t in study.trials]
    mlflow.log_metrics({f"trials_{s.lower()}": states.count(s)
                        for s in ("COMPLETE", "PRUNED", "FAIL")})
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "trials.csv"
        study.trials_dataframe().to_csv(csv, index=False)
        mlflow.log_artifact(str(csv))
    for name, fig in study_plots.figures(study).items():
        mlflow.log_figure(fig, f"optuna/{name}.png")
        study_plots.close(fig)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        print("no trial completed: nothing to register")
        return
    best = study.best_trial
    mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
    mlflow.log_metrics({"best_val_acc": best.value, "best_trial_number": best.number})
    if TEST_ACC in best.user_attrs:
        mlflow.log_metric("best_test_acc", best.user_attrs[TEST_ACC])
    register_champion(best, settings, data)


def register_champion(best: optuna.trial.FrozenTrial, settings: TuneSettings,
                      data: FashionMNIST) -> None:
    """Log the best trial's model on the parent run and register it as a new version of
    `fashion-mnist-<model>`; the alias `champion` moves to it only if its validation accuracy
    beats the current champion's (the test accuracy is recorded, never compared)."""
    client = mlflow.MlflowClient()
    registry_name = f"fashion-mnist-{settings.model}"
    tags = {"study_name": settings.study_name, "trial_number": str(best.number)}
    try:
        current = client.get_model_version_by_alias(registry_name, "champion")
    except mlflow.exceptions.MlflowException:
        current = None  # no champion yet
    if current and all(current.tags.get(k) == v for k, v in tags.items()):
        print(f"champion unchanged: {registry_name} version {current.version} is this "
              f"study's best trial already")
        return
    config = settings.space.sample(optuna.trial.FixedTrial(best.params), model=settings.model,
                                   epochs=settings.epochs, seed=settings.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(best.user_attrs[RUN_ID_ATTR], STATE_FILE, tmp)
        model = build_model(config)
        model.load_state_dict(torch.load(path, weights_only=True))
    test_acc = best.user_attrs.get(TEST_ACC, math.nan)
    info = tracklog.save_model(model, data.test.images, registered_model_name=registry_name)
    tracklog.log_confusion(model, data, f"best model: trial {best.number} of "
                                        f"{settings.study_name}")
    mlflow.log_metric("best_model_test_acc", test_acc)
    version = info.registered_model_version
    for k, v in {**tags, "val_acc": f"{best.value:.4f}", "test_acc": f"{test_acc:.4f}"}.items():
        client.set_model_version_tag(registry_name, version, k, v)
    current_val = float(current.tags.get("val_acc", "nan")) if current else -math.inf
    if not best.value > current_val:
        print(f"registered {registry_name} version {version} (val_acc {best.value:.4f}); "
              f"champion stays version {current.version} (val_acc {current_val:.4f})")
        return
    client.set_registered_model_alias(registry_name, "champion", version)
    print(f"registered {registry_name} version {version} as champion "
          f"(trial {best.number}, val_acc {best.value:.4f}, test_acc {test_acc:.4f})")


def summary(study: optuna.Study) -> str:
    """A few lines for the terminal: trial counts, best trial, its accuracies."""
    states = [t.state.name for t in study.trials]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL"))
    lines = [f"study {study.study_name}: {len(states)} trials ({counts})"]
    if "COMPLETE" in states:
        best = study.best_trial
        lines.append(f"best: trial {best.number}, val_acc {best.value:.4f}, test_acc "
                     f"{best.user_attrs.get(TEST_ACC, math.nan):.4f}, params {best.params}")
    return "\n".join(lines)
