"""Optuna studies around the core: every trial is a `train` config and a nested MLflow run.

`tune(settings, data)` opens (or resumes) the study in its storage, runs trials until
`n_trials` / `timeout`, and logs the study to one parent MLflow run: best params and value, a
CSV of all trials, Optuna's plots, and the best trial's model registered as `champion`.

We open the MLflow runs ourselves instead of using Optuna's MLflowCallback: that callback calls
`set_experiment`, which clashes with the run `mlflow run` has already started (MLFLOW_RUN_ID), and
it logs a trial only after it ends, so per-epoch metrics and pruned trials would be lost.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import torch

from pipeline import tracking
from pipeline.config import UserError
from pipeline.data import FashionMNIST
from pipeline.models import build_model
from pipeline.search_space import SearchSpace
from pipeline.training import TEST_ACC, VAL_ACC, Diverged, EpochEnd

STATE_FILE = "model_state.pt"  # each completed trial's weights, to rebuild the champion later
RUN_ID_ATTR = "mlflow_run_id"
FAIL_REASON_ATTR = "fail_reason"


@dataclass(frozen=True)
class TuneSettings:
    model: str
    space: SearchSpace
    study_name: str
    storage: str
    n_trials: int | None
    timeout: float | None  # seconds; checked between trials
    epochs: int
    seed: int
    pruner: str = "median"


class PruneOnValAcc:
    """Training callback: report val_acc each epoch; stop the trial when the pruner says so."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def __call__(self, end: EpochEnd) -> None:
        self.trial.report(end.metrics[VAL_ACC], end.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {end.epoch} "
                                     f"(val_acc {end.metrics[VAL_ACC]:.4f})")


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB URL (sqlite:///, postgresql://, mysql://) or a journal file path."""
    if "://" in url:
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}
                                              if not url.startswith("sqlite") else None)
        except Exception as e:  # bad driver, unreachable host, bad credentials, bad URL
            raise UserError(f"storage {mask_password(url)}: cannot be opened "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(url))


def mask_password(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        # Wait for 5 finished trials and 3 epochs: early epochs of a slow starter look poor.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2)
    return optuna.pruners.NopPruner()


def open_study(settings: TuneSettings) -> optuna.Study:
    storage = make_storage(settings.storage)
    try:
        existing = optuna.load_study(study_name=settings.study_name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None and existing.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(f"study {settings.study_name!r} in {mask_password(settings.storage)} "
                        f"exists with direction {existing.direction.name}; tune maximizes "
                        "val_acc: choose another --study-name")
    n_before = len(existing.trials) if existing else 0
    # Seed with the number of trials already run, so a resumed study continues the sequence
    # instead of replaying the same random start-up configs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # group: the FCN's depth changes which width params exist; multivariate TPE then
        # models each group of co-occurring params jointly.
        sampler = optuna.samplers.TPESampler(seed=settings.seed + n_before, multivariate=True,
                                             group=True, n_startup_trials=6)
    study = optuna.create_study(study_name=settings.study_name, storage=storage,
                                direction="maximize", sampler=sampler,
                                pruner=make_pruner(settings.pruner), load_if_exists=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([VAL_ACC])  # optuna-dashboard shows "val_acc", not "Objective 0"
    if n_before == 0:  # a new study starts from the space's known configurations
        for params in settings.space.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
    return study


def make_objective(settings: TuneSettings, data: FashionMNIST, study_tags: dict[str, str]):
    def objective(trial: optuna.Trial) -> float:
        config = settings.space.sample(trial, model=settings.model, epochs=settings.epochs,
                                       seed=settings.seed)
        tags = {**study_tags, "trial_number": str(trial.number), "trial_state": "RUNNING"}
        state, reason = "FAIL", None
        run_ids: list[str] = []

        def remember(run_id: str) -> None:  # for the champion, and for the final tags
            run_ids.append(run_id)
            trial.set_user_attr(RUN_ID_ATTR, run_id)

        try:
            run_id, result = tracking.train_run(
                config, data, nested=True, tags=tags, run_name=f"trial {trial.number}",
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


def tune(settings: TuneSettings, data: FashionMNIST,
         study: optuna.Study | None = None) -> optuna.Study:
    """Run the study inside one parent MLflow run (the active one under `mlflow run`)."""
    study = study or open_study(settings)
    storage_shown = mask_password(settings.storage)
    study_tags = {"study_name": settings.study_name, "optuna_storage": storage_shown}
    name = f"tune {settings.study_name}"
    resumed = bool(os.environ.get("MLFLOW_RUN_ID"))  # the run `mlflow run` has started
    mlflow.start_run(run_name=None if resumed else name,
                     tags={**study_tags, "tune_parent": "true"})
    if resumed:
        mlflow.set_tag("mlflow.runName", name)
    status = "FAILED"
    try:
        tracking.log_new_params({"model": settings.model, "space": str(settings.space.path),
                                 "study_name": settings.study_name, "storage": storage_shown,
                                 "n_trials": settings.n_trials, "timeout": settings.timeout,
                                 "epochs": settings.epochs, "seed": settings.seed,
                                 "pruner": settings.pruner})
        mlflow.log_artifact(str(settings.space.path))
        study.optimize(make_objective(settings, data, study_tags), n_trials=settings.n_trials,
                       timeout=settings.timeout, catch=(Diverged,), gc_after_trial=True)
        log_study(study, settings, data)
        status = "FINISHED"
        return study
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow.end_run(status)


def log_study(study: optuna.Study, settings: TuneSettings, data: FashionMNIST) -> None:
    """Summary of the whole study (all workers, all calls) on the parent run."""
    from pipeline import study_plots

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
    info = tracking.save_model(model, data.test.images, registered_model_name=registry_name)
    tracking.log_confusion(model, data, f"best model: trial {best.number} of "
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
