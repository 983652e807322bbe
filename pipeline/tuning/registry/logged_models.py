"""A study's trial models in MLflow: each completed trial logs its network as a logged model
(tracking/log.py `save_model`), tagged with its study and trial; they are ranked, kept and
registered from here.

- `ranked(...)`: the study's models, best validation accuracy first (`mlflow.search_logged_models`
  ordered by val_acc on the validation split), as the experiment's Models view sorts them.
- `keep_best(...)`: the disk bound. After each completed trial, the models outside the best
  `keep_models` of the study are deleted (their files, then the model itself), except any model
  a registry version points at. Workers ending trials together may delete the same model twice:
  harmless. A model whose metrics are not linked yet (being logged by another worker) is neither
  counted nor deleted.
"""

from __future__ import annotations

import sys

import mlflow
from mlflow.entities import LoggedModel, LoggedModelStatus
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from pipeline.core.errors import first_line
from pipeline.core.metrics import VAL_ACC
from pipeline.tracking import log as tracklog
from pipeline.tuning.tune_settings import STORAGE_TAG, STUDY_TAG

VALIDATION = tracklog.dataset_name("validation")  # the dataset val_acc is linked to
TRIAL_TAG = "trial_number"
MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # MLflow's note on a model of its registry versions


def model_tags(study_tags: dict[str, str], trial_number: int) -> dict[str, str]:
    """The tags that make a logged model one trial's of one study (study name and storage)."""
    return {
        STUDY_TAG: study_tags[STUDY_TAG],
        STORAGE_TAG: study_tags[STORAGE_TAG],
        TRIAL_TAG: str(trial_number),
    }


def val_acc(model: LoggedModel) -> float | None:
    return next((m.value for m in model.metrics or () if m.key == VAL_ACC), None)


def ranked(experiment_id: str, study_tags: dict[str, str]) -> list[LoggedModel]:
    """The study's ready models that carry a val_acc, best first (the oldest among equals)."""

    def quoted(value: str) -> str:
        return "'" + value.replace("'", "\\'") + "'"

    found = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        output_format="list",
        filter_string=f"tags.{STUDY_TAG} = {quoted(study_tags[STUDY_TAG])} AND "
        f"tags.{STORAGE_TAG} = {quoted(study_tags[STORAGE_TAG])}",
        order_by=[
            {"field_name": f"metrics.{VAL_ACC}", "ascending": False, "dataset_name": VALIDATION},
            {"field_name": "creation_time", "ascending": True},
        ],
    )
    return [m for m in found if m.status == LoggedModelStatus.READY and val_acc(m) is not None]


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
