"""A study's trial models in MLflow: each completed trial logs its network as a logged model
(tracking/log.py `save_model`), tagged with its study and trial; they are ranked, kept and
registered from here.

- `study_tags(settings, study)`: what a study's runs, models and versions are tagged with: its
  name and storage, and its identity (attrs.STUDY_ID_ATTR), by which alone they are told
  apart: a study made again under the same name and storage has another. A study from before
  identities is told by name and storage among the things without one.

- `ranked(...)`: the study's models, best validation accuracy first (`mlflow.search_logged_models`
  ordered by val_acc on the validation split), as the experiment's Models view sorts them.
- `keep_best(...)`: the disk bound. After each completed trial, the models outside the best
  `keep_models` of the study are deleted (their files, then the model itself), except any model
  a registry version points at. Workers ending trials together may delete the same model twice:
  harmless. A model whose metrics are not linked yet (being logged by another worker) is neither
  counted nor deleted.
"""

from __future__ import annotations

import re
import sys

import mlflow
import optuna
from mlflow.entities import LoggedModel, LoggedModelStatus
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from pipeline.core.errors import first_line
from pipeline.core.metrics import VAL_ACC
from pipeline.tracking import log as tracklog
from pipeline.tuning.attrs import STUDY_ID_ATTR
from pipeline.tuning.tune_settings import STORAGE_TAG, STUDY_TAG, TuneSettings

VALIDATION = tracklog.dataset_name("validation")  # the dataset val_acc is linked to
TRIAL_TAG = "trial_number"
STUDY_ID_TAG = STUDY_ID_ATTR
MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # MLflow's note on a model of its registry versions


def study_tags(settings: TuneSettings, study: optuna.Study) -> dict[str, str]:
    """The tags of the study's runs and models: name, storage and (when it has one) identity."""
    return {**settings.tags(), **identity(study)}


def identity(study: optuna.Study) -> dict[str, str]:
    """The study's identity as a tag, read from its storage ({} for a study without one)."""
    found = study.user_attrs.get(STUDY_ID_ATTR)
    return {STUDY_ID_TAG: str(found)} if found else {}


def of_study(tags: dict[str, str], study_tags: dict[str, str]) -> bool:
    """Are `tags` (a run's, a model's, a version's) those of the study of `study_tags`?"""
    if STUDY_ID_TAG in study_tags:
        return tags.get(STUDY_ID_TAG) == study_tags[STUDY_ID_TAG]
    return STUDY_ID_TAG not in tags and all(
        tags.get(key) == study_tags[key] for key in (STUDY_TAG, STORAGE_TAG) if key in study_tags
    )


def model_tags(study_tags: dict[str, str], trial_number: int) -> dict[str, str]:
    """The tags that make a logged model one trial's of one study."""
    keys = (STUDY_TAG, STORAGE_TAG, STUDY_ID_TAG)
    return {**{k: study_tags[k] for k in keys if k in study_tags}, TRIAL_TAG: str(trial_number)}


def like(value: str) -> str:
    """A LIKE pattern that matches `value` (and maybe more), safe in any MLflow filter string:
    MLflow's parser reads no escapes, so a quote cannot be matched with `=`. Each run of other
    characters than letters, digits, space, `.` and `-` is a `%` (`%` and `_` are patterns
    themselves; a backslash is PostgreSQL's LIKE escape). The caller compares exactly."""
    return "'" + re.sub(r"[^A-Za-z0-9 .-]+", "%", value) + "'"


def val_acc(model: LoggedModel) -> float | None:
    return next((m.value for m in model.metrics or () if m.key == VAL_ACC), None)


def ranked(experiment_id: str, study_tags: dict[str, str]) -> list[LoggedModel]:
    """The study's ready models that carry a val_acc, best first (the oldest among equals)."""
    key = STUDY_ID_TAG if STUDY_ID_TAG in study_tags else STUDY_TAG
    found = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        output_format="list",
        filter_string=f"tags.{key} LIKE {like(study_tags[key])}",
        order_by=[
            {"field_name": f"metrics.{VAL_ACC}", "ascending": False, "dataset_name": VALIDATION},
            {"field_name": "creation_time", "ascending": True},
        ],
    )
    return [
        m
        for m in found
        if m.status == LoggedModelStatus.READY
        and val_acc(m) is not None
        and of_study(m.tags, study_tags)
    ]


def registered_ids() -> set[str]:
    """Logged models that some registry version points at (its source `models:/<model id>`):
    never deleted here."""
    client = mlflow.MlflowClient()
    ids: set[str] = set()
    for version in client.search_model_versions(max_results=10_000):
        if version.model_id is not None:
            ids.add(version.model_id)
        if version.source and version.source.startswith("models:/m-"):
            ids.add(version.source.removeprefix("models:/").split("/")[0])
    return ids


def keep_best(experiment_id: str, study_tags: dict[str, str], keep: int | None) -> list[str]:
    """Delete the study's models beyond the best `keep` (None: keep all); returns their ids."""
    if not keep:
        return []
    try:
        extra = ranked(experiment_id, study_tags)[keep:]
        protected = registered_ids() if extra else set()
    except mlflow.exceptions.MlflowException as e:  # a busy store: the next trial tries again
        print(f"note: the study's logged models not pruned now ({first_line(e)})", file=sys.stderr)
        return []
    client, deleted = mlflow.MlflowClient(), []
    for model in extra:
        if model.model_id in protected or MODEL_VERSIONS_TAG in model.tags:
            continue
        try:
            # Hidden first: a model must never be listed without its files.
            client.delete_logged_model(model.model_id)
            get_artifact_repository(model.artifact_location).delete_artifacts()
            deleted.append(model.model_id)
        except (mlflow.exceptions.MlflowException, OSError) as e:
            # another worker deleted it first, or the store is busy: the next trial tries again
            print(
                f"note: logged model {model.model_id} not deleted ({first_line(e)})",
                file=sys.stderr,
            )
    return deleted
