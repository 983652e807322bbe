"""Passwords in URLs stay out of every line, parameter, tag and helper's command line; under
`mlflow run`, which logs its -P values itself, a storage password is refused.

Table-driven over PostgreSQL, MySQL (pymysql) and MLflow tracking URIs. The study on a real
PostgreSQL with a password, searched for it everywhere afterwards, is in test_scale_out.py.
"""

from __future__ import annotations

import os

import mlflow
import pytest

from pipeline.core.credentials import password, with_password, without_password
from pipeline.core.errors import UserError
from pipeline.tracking import store
from pipeline.tuning.tune_settings import TuneOptions
from pipeline.tuning.workers import processes
from pipeline.tuning.workers.storage import refuse_logged_password
from tests.conftest import cli, project_run

SECRET = "s3cr:et@/?#%"  # every character that a URL must escape


def quoted(secret: str = SECRET) -> str:
    from urllib.parse import quote

    return quote(secret, safe="")


# (URL as typed, its password, the URL shown everywhere)
URLS = [
    (f"postgresql://tuner:{quoted()}@db:5432/optuna", SECRET, "postgresql://tuner@db:5432/optuna"),
    (
        f"postgresql+psycopg://tuner:{quoted()}@10.0.0.5/optuna?connect_timeout=5",
        SECRET,
        "postgresql+psycopg://tuner@10.0.0.5/optuna?connect_timeout=5",
    ),
    (
        "postgresql:///optuna?host=/run/postgresql&password=pw1",
        "pw1",
        "postgresql:///optuna?host=%2Frun%2Fpostgresql",
    ),
    (
        f"mysql+pymysql://tuner:{quoted()}@db:3306/optuna?charset=utf8mb4",
        SECRET,
        "mysql+pymysql://tuner@db:3306/optuna?charset=utf8mb4",
    ),
    ("mysql+pymysql://tuner@db/optuna?passwd=pw2", "pw2", "mysql+pymysql://tuner@db/optuna"),
    (f"http://workers:{quoted()}@mlflow.lan:5000", SECRET, "http://workers@mlflow.lan:5000"),
    (f"https://workers:{quoted()}@mlflow.lan/mlflow", SECRET, "https://workers@mlflow.lan/mlflow"),
    # no password: shown as written
    ("postgresql://tuner@db/optuna", None, "postgresql://tuner@db/optuna"),
    (
        "mysql+pymysql://tuner@db/optuna?read_default_file=/home/t/.my.cnf",
        None,
        "mysql+pymysql://tuner@db/optuna?read_default_file=/home/t/.my.cnf",
    ),
    ("sqlite:///optuna.db", None, "sqlite:///optuna.db"),
    ("http://127.0.0.1:5000", None, "http://127.0.0.1:5000"),
    ("runs/journal.log", None, "runs/journal.log"),
    # unreadable (a port that is no number) but holding credentials: only the scheme is shown
    (f"postgresql://tuner:{quoted()}@db:port/optuna", None, "postgresql://(unreadable URL)"),
]


@pytest.mark.parametrize("url, secret, shown", URLS)
def test_a_url_is_shown_without_its_password(url, secret, shown):
    assert password(url) == secret
    assert without_password(url) == shown
    assert quoted() not in shown and (secret is None or secret not in shown)


@pytest.mark.parametrize(
    "url", [u for u, secret, _ in URLS if secret and "://" in u and not u.startswith("http")]
)
def test_a_password_put_back_gives_the_same_connection(url):
    from sqlalchemy.engine import make_url

    back = with_password(without_password(url), password(url))
    assert password(back) == password(url)
    again = make_url(back)
    assert (again.host, again.port, again.database, again.username) == (
        make_url(url).host,
        make_url(url).port,
        make_url(url).database,
        make_url(url).username,
    )


def test_the_study_s_parameters_and_tags_hold_no_password():
    settings = TuneOptions(
        storage=f"postgresql://tuner:{quoted()}@db/optuna", n_trials=0, timeout=60
    ).resolve()
    assert settings.params()["storage"] == "postgresql://tuner@db/optuna"
    assert settings.tags()["optuna_storage"] == "postgresql://tuner@db/optuna"
    # the same tag whichever way the password came: workers of one study find each other's models
    assert (
        TuneOptions(storage="postgresql://tuner@db/optuna", n_trials=0, timeout=60).resolve().tags()
        == settings.tags()
    )


def test_helpers_get_the_password_in_their_environment_not_their_command_line(monkeypatch):
    opts = TuneOptions(storage=f"postgresql://tuner:{quoted()}@db/optuna", n_trials=4, workers=2)
    [argv] = processes.helper_argv(opts, opts.resolve())
    assert argv[argv.index("--storage") + 1] == "postgresql://tuner@db/optuna"
    assert not any(SECRET in a or quoted() in a for a in argv)
    # what the helper does with its environment: the password back, and gone from os.environ
    monkeypatch.setenv(processes.PASSWORD_VARIABLE, SECRET)
    assert password(processes.helper_storage("postgresql://tuner@db/optuna")) == SECRET
    assert processes.PASSWORD_VARIABLE not in os.environ
    assert processes.helper_storage("sqlite:///o.db") == "sqlite:///o.db"  # none given: as is


# (storage under `mlflow run`, what the refusal must point to)
UNDER_MLFLOW_RUN = [
    (f"postgresql://tuner:{quoted()}@db/optuna", "PGPASSWORD"),
    (f"postgresql+psycopg://tuner:{quoted()}@db/optuna", ".pgpass"),
    (f"mysql+pymysql://tuner:{quoted()}@db/optuna", "read_default_file"),
    ("mysql+pymysql://tuner@db/optuna?passwd=pw2", "read_default_file"),
]


@pytest.mark.parametrize("url, remedy", UNDER_MLFLOW_RUN)
def test_under_mlflow_run_a_storage_password_is_refused(url, remedy, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "abc123")
    with pytest.raises(UserError) as refused:
        refuse_logged_password(url)
    line = str(refused.value)
    assert "\n" not in line and remedy in line and "abc123" in line  # the run that holds it
    assert without_password(url) in line
    assert quoted() not in line and SECRET not in line and "pw2" not in line


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://tuner@db/optuna",
        "sqlite:///optuna.db",
        "mysql+pymysql://tuner@db/optuna?read_default_file=~/.my.cnf",
    ],
)
def test_under_mlflow_run_a_storage_without_password_is_fine(url, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "abc123")
    refuse_logged_password(url)


def test_outside_mlflow_run_an_inline_password_still_works(monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    refuse_logged_password(f"postgresql://tuner:{quoted()}@db/optuna")


def password_tune(run_id: str, env: dict[str, str], cwd) -> tuple[str, str]:
    """`tune` on a PostgreSQL storage with an inline password, under MLFLOW_RUN_ID=run_id: its
    one error line (exit 2) and all it printed."""
    out = cli(
        "tune",
        "--storage",
        f"postgresql://tuner:{quoted()}@127.0.0.1:1/optuna",
        "--n-trials",
        "1",
        "--data-dir",
        str(cwd / "no-data"),
        env={**env, "MLFLOW_RUN_ID": run_id},
        cwd=cwd,
        timeout=120,
    )
    assert out.returncode == 2
    [line] = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    return line, out.stderr + out.stdout


def test_mlflow_run_s_tune_refuses_it_in_one_line_before_anything(tracking_env, tmp_path):
    # A process of its own: under MLFLOW_RUN_ID, main() asks Linux to stop it with its parent.
    client = mlflow.MlflowClient()
    run_id = project_run(client, client.create_experiment("tests"), "tune", "tune")
    line, printed = password_tune(run_id, tracking_env, tmp_path)
    assert line.startswith("error: storage postgresql://tuner@127.0.0.1:1/optuna: ")
    assert "PGPASSWORD" in line and f"delete run {run_id}" in line
    assert quoted() not in printed
    # before the data (there is none) and before anything of ours: the run as mlflow run made
    # it, with the line as its end reason
    run = client.get_run(run_id)
    assert run.data.params == {} and run.data.metrics == {}
    assert run.data.tags["end_reason"] == line and quoted() not in str(run.data.tags)
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == 1


@pytest.mark.parametrize("stale", ["finished", "missing"])
def test_a_stale_mlflow_run_id_is_named_not_blamed_for_the_password(stale, tracking_env, tmp_path):
    """Outside `mlflow run` an inline password works; a stale MLFLOW_RUN_ID in the shell is the
    problem to name, not a run to delete (it never saw the password)."""
    client = mlflow.MlflowClient()
    run_id = project_run(client, client.create_experiment("tests"), "old", "tune")
    client.set_terminated(run_id, "FINISHED")
    named = run_id if stale == "finished" else "0" * 32
    line, printed = password_tune(named, tracking_env, tmp_path)
    assert line.startswith(f"error: MLFLOW_RUN_ID={named} ") and "unset it" in line
    assert "delete run" not in line and quoted() not in printed
    assert client.get_run(run_id).data.tags.get("end_reason") is None  # left as it was


# (MLFLOW_TRACKING_URI, refused: a server URI with a password, which MLflow itself prints)
TRACKING_URIS = [
    (f"http://workers:{quoted()}@127.0.0.1:1", True),
    (f"https://workers:{quoted()}@mlflow.lan", True),
    ("http://workers@127.0.0.1:1", False),
    (f"postgresql://mlflow:{quoted()}@127.0.0.1:1/mlflow", False),
    ("sqlite:///mlflow.db", False),
]


@pytest.mark.parametrize("uri, refused", TRACKING_URIS)
def test_a_tracking_uri_is_refused_with_a_server_password_and_never_shown(
    uri, refused, tracking_env
):
    if refused:
        with pytest.raises(UserError) as error:
            store.check_credentials(uri)
        line = str(error.value)
        assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in line
        assert quoted() not in line and without_password(uri) in line
    else:
        store.check_credentials(uri)
    before = mlflow.get_tracking_uri()
    try:
        mlflow.set_tracking_uri(uri)  # connects to nothing
        assert store.shown_uri() == without_password(uri)
        assert quoted() not in store.look_at_it()
    finally:
        mlflow.set_tracking_uri(before)


def test_configure_refuses_a_server_uri_with_a_password_before_any_request(
    tracking_env, monkeypatch
):
    uri = f"http://workers:{quoted()}@127.0.0.1:1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        with pytest.raises(UserError, match="MLFLOW_TRACKING_URI http://workers@127.0.0.1:1: "):
            store.configure()
    finally:
        mlflow.set_tracking_uri(tracking_env["MLFLOW_TRACKING_URI"])


@pytest.mark.parametrize(
    "uri, experiment, shown",
    [
        (
            "sqlite:///mlflow.db",
            "3",
            "Look at it: mlflow ui --backend-store-uri sqlite:///mlflow.db, then "
            "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning",
        ),
        (
            "sqlite:///mlflow.db",
            None,
            "Look at it: mlflow ui --backend-store-uri sqlite:///mlflow.db",
        ),
        (
            f"https://workers:{quoted()}@mlflow.lan/",
            "3",
            "Look at it: https://mlflow.lan/#/experiments/3/runs?workflowType=machine_learning",
        ),
        ("http://127.0.0.1:5000", None, "Look at it: http://127.0.0.1:5000"),
    ],
)
def test_look_at_it_points_at_the_ui_a_server_is_its_own(uri, experiment, shown, monkeypatch):
    """A tracking server is the UI: its page, not an `mlflow ui` command on its URL."""
    if experiment:
        monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment)
    else:
        monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    before = mlflow.get_tracking_uri()
    try:
        mlflow.set_tracking_uri(uri)
        assert store.look_at_it() == shown
    finally:
        mlflow.set_tracking_uri(before)
