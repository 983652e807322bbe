"""A study's identity (docs/operations.md, "Faults: environment and identity"): a study made
again under the same name and storage string never mixes with the old one in MLflow (its
champion, its "already registered", its pruned models); any name a user can type works; a
search space whose parameter changed kind is refused before anything is written."""

from __future__ import annotations

import dataclasses
import re

import mlflow
import numpy as np
import optuna
import pytest
from mlflow.entities import LoggedModelStatus

from pipeline.core.errors import UserError
from pipeline.tuning.attrs import MODEL_ID_ATTR, STUDY_ID_ATTR
from pipeline.tuning.registry import champion, logged_models
from pipeline.tuning.space import load_space
from pipeline.tuning.study import tune
from pipeline.tuning.tune_settings import DEFAULT_SPACE
from pipeline.tuning.workers import resume
from pipeline.tuning.workers.storage import check_storage
from tests.conftest import ROOT, SMALL_SPACE

STORAGE = "sqlite:///optuna.db"
# Names MLflow's filter strings cannot quote, or where a LIKE pattern matches more than them.
NAMES = [
    "it's",
    "x' OR '1'='1",
    'say "hi"',
    "back\\slash",
    "50%_done",
    "naïve",
    "tab\there",
    "semi;colon",
    "a_b",
]


def trial_model(tags: dict[str, str], val_acc: float) -> str:
    """A ready logged model whose val_acc is linked to the validation split (as a trial's)."""
    validation = mlflow.data.from_numpy(np.zeros((2, 3), np.float32), name=logged_models.VALIDATION)
    with mlflow.start_run():
        model = mlflow.initialize_logged_model(name="m", tags=tags)
        mlflow.log_metric("val_acc", val_acc, model_id=model.model_id, dataset=validation)
    mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id


def look_alike(name: str) -> str:
    """Another name that the LIKE pattern of `name` also matches (each NAMES has one)."""
    return re.sub(r"[^A-Za-z0-9 .-]", "x", name)


def test_any_name_finds_its_own_models_and_versions_only(tracking_env):
    """For each name: a study from before identities (name and storage only), one made again
    under that name (with an identity) and a study whose name looks alike to a LIKE pattern;
    each finds its own model and its own registered version, no other."""
    experiment = mlflow.set_experiment("tests").experiment_id
    client = mlflow.MlflowClient()
    client.create_registered_model("m")
    studies = []
    for number, name in enumerate(NAMES):
        legacy = {"study_name": name, "optuna_storage": STORAGE}
        for tags in (
            legacy,
            {**legacy, "study_id": f"id{number}"},
            {**legacy, "study_name": look_alike(name)},
        ):
            version_tags = {k: v for k, v in tags.items() if k != "optuna_storage"}
            version_tags["trial_number"] = "0"
            model_id = trial_model(logged_models.model_tags(tags, 0), 0.5)
            version = client.create_model_version("m", "file:///nowhere", tags=version_tags)
            studies.append((tags, version_tags, model_id, version.version))
    for tags, version_tags, model_id, version in studies:
        assert [m.model_id for m in logged_models.ranked(experiment, tags)] == [model_id], tags
        found = champion.versions_of(client, "m", version_tags)
        assert [v.version for v in found] == [version], tags


def test_a_study_made_again_under_its_name_is_another_study(settings, tiny_data, tmp_path):
    """optuna.db deleted and the same `tune` run again (the same seed: the same trials, the
    same values): the new study's champion is registered, and its pruning keeps the old one's
    models. The name holds a quote, which MLflow's filter strings cannot match with `=`."""
    s = dataclasses.replace(settings(n_trials=2, study_name="it's"), keep_models=1)
    old = tune(s, tiny_data)
    (tmp_path / "optuna.db").unlink()
    new = tune(s, tiny_data)
    ids = [study.user_attrs[STUDY_ID_ATTR] for study in (old, new)]
    assert len(set(ids)) == 2 and new.best_trial.number == old.best_trial.number

    experiment = mlflow.get_experiment_by_name("tests").experiment_id
    for study, study_id in zip((old, new), ids):
        tags = logged_models.study_tags(s, study)
        assert tags["study_id"] == study_id
        [kept] = logged_models.ranked(experiment, tags)  # pruned to one, its own
        assert kept.model_id == study.best_trial.user_attrs[MODEL_ID_ATTR]
    versions = champion.versions_of(mlflow.MlflowClient(), champion.registry_name("fcn"))
    assert [v.tags["study_id"] for v in versions] == ids
    assert versions[1].source == f"models:/{new.best_trial.user_attrs[MODEL_ID_ATTR]}"
    runs = mlflow.search_runs(experiment_ids=[experiment], output_format="list")
    assert sorted(r.data.tags["study_id"] for r in runs) == sorted([ids[0]] * 3 + [ids[1]] * 3)


def test_a_study_without_an_identity_still_registers_its_champion(settings, tiny_data):
    s = settings(n_trials=1)
    optuna.create_study(study_name="s", storage=s.storage, direction="maximize")  # no id
    study = tune(s, tiny_data)
    assert STUDY_ID_ATTR not in study.user_attrs
    [version] = champion.versions_of(mlflow.MlflowClient(), champion.registry_name("fcn"))
    assert "study_id" not in version.tags
    assert version.source == f"models:/{study.best_trial.user_attrs[MODEL_ID_ATTR]}"


def existing_study(s) -> optuna.Study:
    """Study "s" in the storage of settings `s`, with one finished trial of `s`'s space."""
    study = optuna.create_study(study_name="s", storage=s.storage, direction="maximize")
    asked = resume.distributions(s.space, s.epochs)
    params = {name: d.choices[0] if hasattr(d, "choices") else d.low for name, d in asked.items()}
    study.add_trial(optuna.trial.create_trial(params=params, distributions=asked, value=0.5))
    return study


# (id, the space's change, the parameter the refusal names; None: Optuna resumes it as it is)
CHANGES = [
    (
        "float-to-categorical",
        ("{type: float, low: 1.0e-3", "{type: categorical, choices: [0.001, 0.01]}  #"),
        "lr",
    ),
    ("log-to-linear", ("high: 1.0e-2, log: true}", "high: 1.0e-2}"), "lr"),
    ("other-choices", ("choices: [adam, sgd]", "choices: [adam]"), "optimizer"),
    ("int-log-to-linear", ("high: 32, log: true}", "high: 32}"), "width_1"),
    ("fixed-to-searched", ("batch_size: 32", "batch_size: {type: int, low: 16, high: 64}"), None),
    ("wider-range", ("low: 1.0e-3, high: 1.0e-2", "low: 1.0e-4, high: 1.0e-1"), None),
    ("deeper", ("depth: [1, 2]", "depth: [1, 3]"), None),
]


@pytest.mark.parametrize("change, named", [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_a_parameter_of_another_kind_is_refused_before_any_trial(change, named, settings):
    before = existing_study(settings())
    changed = settings(space_text=SMALL_SPACE.replace(*change))
    assert changed.space != settings().space
    if named is None:
        check_storage(changed)
        return
    with pytest.raises(UserError) as refused:
        check_storage(changed)
    line = str(refused.value)
    assert line.startswith(f"study 's' in {changed.storage} searched {named} as ")
    assert "\n" not in line and "choose another --study-name" in line
    assert len(optuna.load_study(study_name="s", storage=changed.storage).trials) == len(
        before.trials
    )


@pytest.mark.parametrize("space", sorted((ROOT / "search_spaces").glob("*.yaml")), ids=str)
def test_the_distributions_are_those_a_real_trial_suggests(space):
    """resume.distributions asks a space as SearchSpace.sample does: every distribution a real
    trial of each space records is among them, the same."""
    loaded = load_space(space)
    model = {v: k for k, v in DEFAULT_SPACE.items()}.get(space.name, "fcn")
    epochs = loaded.max_epochs if loaded.families else 20
    asked = resume.distributions(loaded, epochs)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        loaded.sample(trial, model=model, epochs=epochs, seed=0)
        for name, distribution in trial.distributions.items():
            assert asked[name] == distribution, name
        study.tell(trial, 0.5)
