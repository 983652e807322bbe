"""The champion alias under concurrent workers: it ends on the best version, whatever the order.

Workers are threads racing on one private SQLite store (a barrier starts them together), or a
stale read made deterministic by running another worker inside the first one's read.
"""

import threading

import mlflow
import optuna
import pytest

from pipeline.tuning.attrs import MODEL_ID_ATTR
from pipeline.tuning.registry import champion, logged_models
from tests.test_logged_models import log_trial_model

NAME = champion.registry_name("fcn")


def add_version(client: mlflow.MlflowClient, val_acc: float, trial_number: int = 0):
    return client.create_model_version(
        NAME,
        source="file:///nowhere/model",
        tags={"study_name": "s", "trial_number": str(trial_number), "val_acc": f"{val_acc:.6g}"},
    )


def alias(client: mlflow.MlflowClient):
    return client.get_registered_model(NAME).aliases.get(champion.ALIAS)


@pytest.fixture
def client(tracking_env):
    client = mlflow.MlflowClient()
    client.create_registered_model(NAME)
    return client


def test_workers_ending_together_leave_the_alias_on_the_best_version(client):
    accuracies = [0.7898, 0.8562, 0.8011, 0.8345, 0.8120, 0.8562]
    start, errors = threading.Barrier(len(accuracies)), []

    def worker(number: int, val_acc: float) -> None:
        try:
            start.wait()
            add_version(client, val_acc, number)
            champion.move_alias(client, NAME)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n, v)) for n, v in enumerate(accuracies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    best = champion.best_version(client, NAME)
    assert best.tags["val_acc"] == "0.8562"
    assert str(alias(client)) == str(best.version)
    assert best.version == min(
        int(v.version)
        for v in client.search_model_versions(f"name = '{NAME}'")
        if v.tags["val_acc"] == "0.8562"
    )  # the older of two equals


def test_an_out_of_date_view_written_last_is_corrected(client, monkeypatch):
    """Worker A reads the versions, then worker B registers a better one and moves the alias
    before A writes what it read: A must not leave the alias on its out-of-date best."""
    add_version(client, 0.7898)
    real, calls = champion.best_version, []

    def stale_for_a(client_, name):
        seen = real(client_, name)
        calls.append(1)
        if len(calls) == 1:  # A has read; B now runs from start to end
            add_version(client, 0.8562, 1)
            with monkeypatch.context() as m:
                m.setattr(champion, "best_version", real)
                champion.move_alias(client, NAME)
            assert alias(client) == 2
        return seen

    monkeypatch.setattr(champion, "best_version", stale_for_a)
    assert champion.move_alias(client, NAME).version == 2
    assert alias(client) == 2


def test_a_conflict_is_retried_and_never_a_traceback(client, monkeypatch, capsys):
    add_version(client, 0.8)
    real, conflicts = client.set_registered_model_alias, []

    def conflicting(*args):
        if len(conflicts) < 2:
            conflicts.append(1)
            raise mlflow.exceptions.MlflowException(
                "UNIQUE constraint failed: registered_model_aliases.name"
            )
        return real(*args)

    monkeypatch.setattr(client, "set_registered_model_alias", conflicting)
    monkeypatch.setattr(champion.time, "sleep", lambda s: None)
    assert champion.move_alias(client, NAME).version == 1 and len(conflicts) == 2

    def always_conflicting(*args):
        raise mlflow.exceptions.MlflowException("UNIQUE constraint failed")

    monkeypatch.setattr(client, "set_registered_model_alias", always_conflicting)
    add_version(client, 0.9)
    assert champion.move_alias(client, NAME, attempts=3) is None
    assert "could not settle the alias champion" in capsys.readouterr().err


def test_the_best_trial_is_read_again_and_registered_once(settings, tiny_data):  # noqa: F811
    from pipeline.tuning.study import tune

    s = settings(n_trials=2)
    study = tune(s, tiny_data)
    assert len(client_versions()) == 1
    with mlflow.start_run():
        champion.register_champion(study, s, tiny_data)  # the same: not again
    assert len(client_versions()) == 1

    # Another worker completes a better trial, and logs its model, after this one's study
    # handle was made.
    other = optuna.load_study(study_name="s", storage=s.storage)
    best = other.best_trial
    model_id = log_trial_model(logged_models.study_tags(s, study), 2, 1.0)
    other.add_trial(
        optuna.trial.create_trial(
            params=best.params,
            distributions=best.distributions,
            value=1.0,
            user_attrs={**best.user_attrs, MODEL_ID_ATTR: model_id},
        )
    )
    with mlflow.start_run():
        champion.register_champion(study, s, tiny_data)
    assert [v.tags["trial_number"] for v in client_versions()] == [str(best.number), "2"]
    assert alias(mlflow.MlflowClient()) == client_versions()[-1].version
    assert client_versions()[-1].source == f"models:/{model_id}"  # its own model, as logged


def client_versions():
    return champion.versions_of(mlflow.MlflowClient(), NAME)
