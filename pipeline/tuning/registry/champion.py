"""The study's best trial model as a registered model, and the alias `champion` on the best
version.

The champion is chosen among the study's logged models (tuning/registry/logged_models.py: the Models
view's ranking by val_acc) and registered from its URI `models:/<model id>`: the version is the
trial's own model, nothing is rebuilt.

Any number of workers may end a study together, on any MLflow backend, so each step is safe to
repeat and to interleave:
- The best model is searched right before registering: another worker may have completed a
  better trial since this worker's last one.
- A trial already registered (a version tagged with its study's name and identity and its
  trial_number: tuning/registry/logged_models.py `of_study`) is not registered again; when
  two workers register the same trial at once, the later version is deleted again.
- `move_alias` puts `champion` on the version with the best val_acc among all the model's
  versions, re-reading after each write until it sees that state (another worker may have
  written an older view in between); conflicting writes are retried with jitter.
So the alias ends on the best version whatever the interleaving. The test accuracy is
recorded on each version, never compared.
"""

from __future__ import annotations

import math
import random
import sys
import time

import mlflow
import optuna
from mlflow.entities import LoggedModel

from pipeline.core import plots
from pipeline.core.data import FashionMNIST
from pipeline.core.errors import first_line
from pipeline.core.metrics import TEST_ACC, VAL_ACC
from pipeline.serving import evaluate as evaluation
from pipeline.tracking import lifecycle
from pipeline.tracking.log import CONFUSION_FIGURE
from pipeline.tracking.registered import CHAMPION_ALIAS as ALIAS
from pipeline.tracking.registered import registry_name
from pipeline.tuning.registry import logged_models
from pipeline.tuning.registry.logged_models import TRIAL_TAG
from pipeline.tuning.tune_settings import STORAGE_TAG, STUDY_TAG, TuneSettings


def register_champion(study: optuna.Study, settings: TuneSettings, data: FashionMNIST) -> None:
    """Register the study's best logged model (unless it is already) and move `champion` to the
    best version of `fashion-mnist-<model>`."""
    client = mlflow.MlflowClient()
    name = registry_name(settings.model)
    study_tags = logged_models.study_tags(settings, study)
    ranked = logged_models.ranked(lifecycle.active_run().info.experiment_id, study_tags)
    if not ranked:
        print("no trial of this study has a logged model: nothing to register")
        return
    best = ranked[0]
    trial = best.tags[logged_models.TRIAL_TAG]
    if study.best_trial.number != int(trial):  # e.g. a study begun before models were logged
        print(
            f"note: the study's best trial {study.best_trial.number} has no logged model "
            f"here; the best that has one is trial {trial}"
        )
    tags = {
        **{k: v for k, v in study_tags.items() if k != STORAGE_TAG},
        TRIAL_TAG: trial,
    }
    registered = versions_of(client, name, tags)
    if registered:
        print(
            f"{name} version {registered[0].version} is trial {trial} of "
            f"{settings.study_name} already"
        )
    else:
        register(client, best, name, data, tags)
    champion = move_alias(client, name)
    if champion is not None:
        print(
            f"champion: {name} version {champion.version} (study "
            f"{champion.tags.get(STUDY_TAG)}, trial {champion.tags.get(TRIAL_TAG)}, "
            f"{VAL_ACC} {champion.tags[VAL_ACC]})"
        )


def metric(model: LoggedModel, key: str) -> float:
    return next((m.value for m in model.metrics or () if m.key == key), math.nan)


def register(
    client: mlflow.MlflowClient,
    best: LoggedModel,
    name: str,
    data: FashionMNIST,
    tags: dict[str, str],
) -> None:
    """Register the trial's logged model as a new version; its confusion matrix and test
    accuracy go on the active (parent) run."""
    trial = tags[TRIAL_TAG]
    val_acc, test_acc = metric(best, VAL_ACC), metric(best, TEST_ACC)
    uri = f"models:/{best.model_id}"
    # The exported program as `evaluate` loads it (it refuses .eval(): it is in eval mode).
    counts = evaluation.evaluate(evaluation.load(uri), data.test).counts
    mlflow.log_figure(
        plots.confusion(counts, f"best model: trial {trial} of {tags[STUDY_TAG]}"),
        CONFUSION_FIGURE,
    )
    mlflow.log_metric(f"best_model_{TEST_ACC}", test_acc)
    # The tags come with the version in one call: a version is never seen without them.
    version = mlflow.register_model(
        uri, name, tags={**tags, VAL_ACC: f"{val_acc:.6g}", TEST_ACC: f"{test_acc:.4f}"}
    )
    first = versions_of(client, name, tags)[0]
    if first.version != version.version:  # another worker registered it at the same moment
        client.delete_model_version(name, version.version)
        print(f"{name} version {first.version} is trial {trial} already")
        return
    print(
        f"registered {name} version {version.version} ({uri}: trial {trial}, val_acc "
        f"{val_acc:.4f}, test_acc {test_acc:.4f})"
    )


def versions_of(client: mlflow.MlflowClient, name: str, tags: dict[str, str] | None = None):
    """The versions of model `name`, oldest first: all, or those of the trial of `tags` (its
    number, its study's name and identity)."""
    trial = logged_models.TRIAL_TAG
    found = [
        v
        for v in client.search_model_versions(f"name = '{name}'")
        if tags is None or v.tags.get(trial) == tags[trial] and logged_models.of_study(v.tags, tags)
    ]
    return sorted(found, key=lambda v: int(v.version))


def best_version(client: mlflow.MlflowClient, name: str):
    """The version with the highest val_acc tag (the oldest among equals), or None."""

    def val_acc(version) -> float:
        try:
            return float(version.tags[VAL_ACC])
        except (KeyError, ValueError):
            return math.nan

    scored = [v for v in versions_of(client, name) if not math.isnan(val_acc(v))]
    return max(scored, key=lambda v: (val_acc(v), -int(v.version)), default=None)


def move_alias(client: mlflow.MlflowClient, name: str, attempts: int = 10):
    """Put `champion` on the best version of `name`, and read until it is seen there; returns
    that version (None: no version has a val_acc). Idempotent: any worker may repeat it."""
    error = "other workers kept moving it"
    for attempt in range(1, attempts + 1):
        try:
            best = best_version(client, name)
            if best is None:
                return None
            if str(client.get_registered_model(name).aliases.get(ALIAS)) == str(best.version):
                return best
            # Then read again: another worker may move it to an older view meanwhile.
            client.set_registered_model_alias(name, ALIAS, best.version)
        except mlflow.exceptions.MlflowException as e:
            # Two first aliases at once: "UNIQUE constraint failed: registered_model_aliases";
            # SQLite busy. Whoever lost reads again after a random pause.
            error = first_line(e)
            time.sleep(random.uniform(0.05, 0.3) * attempt)
    print(
        f"warning: could not settle the alias {ALIAS} of {name} ({error}); run `tune` "
        "again to settle it",
        file=sys.stderr,
    )
    return None
