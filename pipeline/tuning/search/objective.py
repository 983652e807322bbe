"""A trial is a `train` run: the objective samples a config, trains it in a nested MLflow run
(tracking/log.py) and returns its validation accuracy. A completed trial's network is a logged
model of its run; the study keeps the best `keep_models` of them (tuning/registry/logged_models.py).

We open the MLflow runs ourselves instead of using Optuna's MLflowCallback: that callback calls
`set_experiment`, which clashes with the run `mlflow run` has already started (MLFLOW_RUN_ID), and
it logs a trial only after it ends, so per-epoch metrics and pruned trials would be lost.
"""

from __future__ import annotations

import sys

import mlflow
import optuna

from pipeline.core.data import FashionMNIST
from pipeline.core.errors import first_line
from pipeline.core.metrics import TEST_ACC, VAL_ACC
from pipeline.core.training import Callback, Diverged, EpochEnd, TrainResult
from pipeline.tracking import log as tracklog
from pipeline.tuning.attrs import (
    FAIL_REASON_ATTR,
    MODEL_ID_ATTR,
    PARENT_RUN_ID_ATTR,
    RETRY_OF_ATTR,
    RUN_ID_ATTR,
    TRIAL_EPOCHS_ATTR,
    TRIAL_MODEL_ATTR,
    TRIAL_REASON_TAG,
    TRIAL_STATE_TAG,
    WORKER_ATTR,
)
from pipeline.tuning.registry import logged_models
from pipeline.tuning.search.budget import OVERTIME_SHARE, Overtime
from pipeline.tuning.tune_settings import TuneSettings
from pipeline.tuning.workers.recovery import this_worker


def is_frontier(settings: TuneSettings) -> bool:
    return len(settings.directions) > 1


def objective_values(
    settings: TuneSettings, trial: optuna.Trial, config, result: TrainResult
) -> float | tuple[float, float]:
    """What the objective returns: val_acc, or (val_acc, train_time_s) for a frontier, whose
    trials also record their family and epochs (what the front is read by)."""
    if not is_frontier(settings):
        return result.final[VAL_ACC]
    trial.set_user_attr(TRIAL_MODEL_ATTR, config.model)
    trial.set_user_attr(TRIAL_EPOCHS_ATTR, config.epochs)
    return result.final[VAL_ACC], result.train_time_s


class PruneOnValAcc:
    """Training callback: report val_acc each epoch; stop the trial when the pruner says so."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def __call__(self, end: EpochEnd) -> None:
        self.trial.report(end.metrics[VAL_ACC], end.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at epoch {end.epoch} (val_acc {end.metrics[VAL_ACC]:.4f})"
            )


def make_objective(
    settings: TuneSettings,
    data: FashionMNIST,
    study_tags: dict[str, str],
    parent_run_id: str,
    own_parent: bool = True,
    deadline: float | None = None,
):
    """`own_parent`: the parent run is this worker's, closed as KILLED if the worker dies (a
    helper's parent run is the main worker's, which lives on). Past the study's `deadline`
    (time.monotonic), a trial may run OVERTIME_SHARE of its budget (tuning/search/budget.py)."""
    experiment_id = mlflow.MlflowClient().get_run(parent_run_id).info.experiment_id

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        worker = this_worker()  # first: a trial without it is one whose worker never began
        for key, value in worker.items():
            trial.set_user_attr(key, value)
        config = settings.space.sample(
            trial, model=settings.model, epochs=settings.epochs, seed=settings.seed
        )
        # Read again for each trial: a worker that loaded the study while its creator was still
        # writing the identity (tuning/search/sampler.py) tags its trials with it all the same.
        trial_study = {**study_tags, **logged_models.identity(trial.study)}
        tags = {
            **trial_study,
            logged_models.TRIAL_TAG: str(trial.number),
            TRIAL_STATE_TAG: "RUNNING",
            WORKER_ATTR: worker[WORKER_ATTR],
        }
        if RETRY_OF_ATTR in trial.user_attrs:
            tags[RETRY_OF_ATTR] = str(trial.user_attrs[RETRY_OF_ATTR])
        ended = TrialEnd(trial)
        # a frontier: no pruning, nor reporting (Trial.report is single-objective)
        callbacks: list[Callback] = [] if is_frontier(settings) else [PruneOnValAcc(trial)]
        if callbacks and deadline is not None and settings.timeout is not None:
            callbacks.append(Overtime(deadline, OVERTIME_SHARE * settings.timeout, config.epochs))

        def remember(run_id: str) -> None:
            # At once: the champion needs it, and so does whoever closes this run if we die.
            ended.run_ids.append(run_id)
            trial.set_user_attr(RUN_ID_ATTR, run_id)
            if own_parent:
                trial.set_user_attr(PARENT_RUN_ID_ATTR, parent_run_id)

        with ended:
            trained = tracklog.train_run(
                config,
                data,
                nested=True,
                parent_run_id=parent_run_id,
                tags=tags,
                run_name=f"trial {trial.number}",
                confusion=False,  # one per trial costs ~2 s; the champion gets one
                callbacks=callbacks,
                finished_on=(optuna.TrialPruned,),
                on_start=remember,
                log_model=True,
                model_tags=logged_models.model_tags(trial_study, trial.number),
            )
            trial.set_user_attr(MODEL_ID_ATTR, trained.model_id)
            final = trained.result.final
            trial.set_user_attr(TEST_ACC, final[TEST_ACC])  # reported, never selected
            logged_models.keep_best(experiment_id, trial_study, settings.keep_models)
            ended.state = "COMPLETE"
            return objective_values(settings, trial, config, trained.result)

    return objective


class TrialEnd:
    """How a trial ended, written on its MLflow runs as `trial_state` and `trial_reason` when
    the block it wraps exits (a diverged trial's reason also goes to the trial)."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.state = trial, "FAIL"
        self.reason: str | None = None
        self.run_ids: list[str] = []

    def __enter__(self) -> TrialEnd:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if isinstance(error, optuna.TrialPruned):
            self.state, self.reason = "PRUNED", str(error)
        elif isinstance(error, Diverged):
            self.reason = str(error)
            self.trial.set_user_attr(FAIL_REASON_ATTR, self.reason)
        elif isinstance(error, KeyboardInterrupt):
            self.reason = str(error) or "interrupted (Ctrl-C)"
        client = mlflow.MlflowClient()
        try:
            for run_id in self.run_ids:
                client.set_tag(run_id, TRIAL_STATE_TAG, self.state)
                if self.reason:
                    client.set_tag(run_id, TRIAL_REASON_TAG, self.reason)
        except Exception as e:  # e.g. SQLite "database is locked" under load: must not mask
            if error is None:  # how the trial ended (a stop request above all)
                raise
            print(
                f"warning: trial {self.trial.number}'s end not tagged on its run: {first_line(e)}",
                file=sys.stderr,
            )
