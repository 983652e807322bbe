"""A study's trial models: ranked by val_acc, the disk bounded to the best k, registered ones
kept."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from pipeline.core.config import TrainConfig
from pipeline.core.models import build_model
from pipeline.tracking import log as tracklog
from pipeline.tuning.attrs import MODEL_ID_ATTR
from pipeline.tuning.registry import logged_models
from pipeline.tuning.study import tune

STUDY = {"study_name": "s", "optuna_storage": "sqlite:///optuna.db"}


def log_trial_model(study_tags: dict[str, str], trial: int, val_acc: float) -> str:
    """A tiny network logged as a trial's model, its val_acc linked as train_run links it."""
    validation = mlflow.data.from_numpy(np.zeros((2, 3), np.float32), name=logged_models.VALIDATION)
    with mlflow.start_run():
        info = tracklog.save_model(
            build_model(TrainConfig(hidden=(4,))),
            torch.zeros(2, 1, 28, 28),
            tags=logged_models.model_tags(study_tags, trial),
        )
        mlflow.log_metric("val_acc", val_acc, model_id=info.model_id, dataset=validation)
    return info.model_id


def files_of(model_id: str) -> Path:
    return Path(mlflow.get_logged_model(model_id).artifact_location.removeprefix("file://"))


def test_keep_best_deletes_the_rest_of_the_study_but_never_a_registered_model(tracking_env):
    experiment = mlflow.set_experiment("tests").experiment_id
    accs = [0.80, 0.95, 0.70, 0.90, 0.85]
    ids = [log_trial_model(STUDY, trial, acc) for trial, acc in enumerate(accs)]
    other = log_trial_model({**STUDY, "study_name": "other"}, 0, 0.10)
    mlflow.register_model(f"models:/{ids[2]}", "kept")  # the worst, but registered
    files = {model_id: files_of(model_id) for model_id in [*ids, other]}
    assert [m.model_id for m in logged_models.ranked(experiment, STUDY)] == [
        ids[1],
        ids[3],
        ids[4],
        ids[0],
        ids[2],
    ]

    deleted = logged_models.keep_best(experiment, STUDY, 2)

    assert sorted(deleted) == sorted([ids[4], ids[0]])
    assert [m.model_id for m in logged_models.ranked(experiment, STUDY)] == [ids[1], ids[3], ids[2]]
    for model_id in deleted:
        with pytest.raises(mlflow.exceptions.MlflowException, match="not found"):
            mlflow.get_logged_model(model_id)  # deleted: hidden from every view
        assert not files[model_id].exists()
    for model_id in (ids[1], ids[3], ids[2], other):
        assert (files[model_id] / "MLmodel").exists()
    assert logged_models.keep_best(experiment, STUDY, 2) == []  # nothing more to do
    assert logged_models.keep_best(experiment, STUDY, None) == []  # 0 on the command line


def test_a_study_keeps_the_models_of_its_best_trials(settings, tiny_data, monkeypatch):
    s = settings(n_trials=4, keep_models=1)
    files = {}
    real_keep_best = logged_models.keep_best

    def note_files(experiment_id, study_tags, keep):  # where each model was, before deletion
        for model in logged_models.ranked(experiment_id, study_tags):
            files[model.model_id] = files_of(model.model_id)
        return real_keep_best(experiment_id, study_tags, keep)

    monkeypatch.setattr(logged_models, "keep_best", note_files)
    study = tune(s, tiny_data)
    parent = mlflow.search_runs(
        experiment_names=["tests"], output_format="list", filter_string="tags.tune_parent = 'true'"
    )[0]
    (kept,) = logged_models.ranked(parent.info.experiment_id, logged_models.study_tags(s, study))
    assert kept.model_id == study.best_trial.user_attrs[MODEL_ID_ATTR]
    assert len(files) == 4
    for trial in study.trials:
        exists = files[trial.user_attrs[MODEL_ID_ATTR]].exists()
        assert exists == (trial.number == study.best_trial.number)
    champion = mlflow.MlflowClient().get_model_version_by_alias("fashion-mnist-fcn", "champion")
    assert champion.source == f"models:/{kept.model_id}"
