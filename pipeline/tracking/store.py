"""Where runs go: the tracking store and experiment, checked before anything is written.

Defaults: the embedded SQLite file `mlflow.db` in the working directory (override with
MLFLOW_TRACKING_URI) and the experiment "fashion-mnist" (MLFLOW_EXPERIMENT_NAME). Opening the
store also closes the runs a dead process of this host left RUNNING (tracking/orphans.py).
A tracking server's credentials come from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD
(or ~/.mlflow/credentials), never from the URI, which MLflow prints; every line of ours names the
store without a password (`shown_uri`).
"""

from __future__ import annotations

import json
import os
import urllib.request
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urlsplit

import mlflow

from pipeline.core import databases, files
from pipeline.core.credentials import password, without_password
from pipeline.core.errors import UserError, first_line
from pipeline.tracking import lifecycle, orphans
from pipeline.tracking.permissions import check_can_write, refused

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "fashion-mnist"


def configure(experiment: bool = True) -> None:
    """Point MLflow at the store and (unless `experiment` is False: nothing is written yet)
    the experiment; leave the experiment alone under `mlflow run`, whose run is in its own.

    The variables MLflow reads are checked before the store is opened, each problem one line
    naming its variable (a stale value in a user's shell is the usual cause): MLFLOW_TRACKING_URI
    and MLFLOW_REGISTRY_URI, MLFLOW_RUN_CONTEXT, MLFLOW_RUN_ID (tracking/lifecycle.py
    `check_adoptable`), MLFLOW_EXPERIMENT_ID and _NAME. A new SQLite store is only created
    once they all pass.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # noise in logs
    # The variable rules (as in a fresh process), over any URI set in this one before.
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)
    uri = mlflow.get_tracking_uri()
    check_uri("MLFLOW_TRACKING_URI", uri)
    if os.environ.get("MLFLOW_REGISTRY_URI"):
        check_uri("MLFLOW_REGISTRY_URI", os.environ["MLFLOW_REGISTRY_URI"])
    check_run_context()
    lifecycle.check_adoptable()
    path = databases.sqlite_path(uri)
    wanted_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    if wanted_id and path is not None and not path.is_file():
        raise UserError(
            f"MLFLOW_EXPERIMENT_ID={wanted_id[:40]} names no experiment: there is no tracking "
            f"store {shown_uri()} yet; unset it"
        )
    if not experiment:
        return
    open_store(path)
    if not os.environ.get("MLFLOW_RUN_ID"):
        try:
            set_experiment()
        except mlflow.exceptions.MlflowException as e:  # an unknown scheme, a bad path
            raise unusable(uri, e) from None
        check_can_write(uri, os.environ["MLFLOW_EXPERIMENT_ID"])  # set by set_experiment
        check_artifact_folder(os.environ["MLFLOW_EXPERIMENT_ID"])
    orphans.close_orphans()


def open_store(path: Path | None) -> None:
    """Open the tracking store, which creates or upgrades its tables: on an SQLite file
    (`path`) one process at a time (core/databases.py). Whatever stops MLflow is one line."""
    try:
        with databases.creating_tables(path) if path is not None else nullcontext():
            mlflow.MlflowClient().search_experiments(max_results=1)
    except Exception as e:  # MLflow's, SQLAlchemy's or the file system's: all the store's
        raise unusable(tracking_uri(), e) from None


def unusable(uri: str, error: Exception) -> UserError:
    """The line for a store MLflow cannot use: refused by its server, or why not."""
    if isinstance(error, mlflow.exceptions.MlflowException):
        status = error.get_http_status_code()
        if status in (401, 403):
            return UserError(refused(uri, status))
    return UserError(f"MLFLOW_TRACKING_URI {shown_uri()}: unusable ({first_line(error)[:160]})")


# MLflow's database stores (SQLAlchemy URLs); their URLs are read before MLflow reads them.
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def check_uri(variable: str, uri: str) -> None:
    """A tracking or registry URI as far as it can be judged without writing: a server must
    answer and hold no password; a database URL must be readable, and an SQLite one a file
    in an existing folder (not a folder, not memory, not another kind of file)."""
    if uri.startswith(("http://", "https://")):
        check_credentials(uri, variable)
        check_server(uri, variable)
        return
    if uri.split("://")[0].split("+")[0] in DATABASE_SCHEMES:
        why = databases.problem(uri)
        if why:
            raise UserError(f"{variable} {without_password(uri)}: {why}")


def check_run_context() -> None:
    """MLFLOW_RUN_CONTEXT: the JSON object of tags MLflow adds to every run it starts; MLflow
    itself only warns about another value and drops it."""
    text = os.environ.get("MLFLOW_RUN_CONTEXT")
    if text is None:
        return
    try:
        tags = json.loads(text)
    except ValueError:
        tags = None
    if not isinstance(tags, dict):
        raise UserError(
            f"MLFLOW_RUN_CONTEXT={text[:60]!r} is not a JSON object of tags (such as "
            '{"team": "vision"}); fix or unset it'
        )


def check_artifact_folder(experiment_id: str) -> None:
    """An experiment whose artifacts go to a local folder that cannot be one (a file where the
    folder should be, or under one): one line now, not a traceback after the run has started."""
    location = mlflow.MlflowClient().get_experiment(experiment_id).artifact_location
    if "://" in location and not location.startswith("file://"):
        return  # a server or a cloud store: its own errors name it
    folder = Path(location.removeprefix("file://"))
    why = files.not_a_folder(folder)
    if why:
        raise UserError(
            f"the experiment's artifact folder {folder} {why}; move it away, or use another "
            "folder (MLFLOW_EXPERIMENT_NAME, or a tracking store elsewhere)"
        )


def set_experiment() -> None:
    """MLFLOW_EXPERIMENT_NAME (default fashion-mnist), or MLFLOW_EXPERIMENT_ID when only that is
    set; both set and naming different experiments is one line, not MLflow's traceback at the
    first run (a stale MLFLOW_EXPERIMENT_ID exported in a shell). A deleted experiment is
    named with the variable that named it."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    wanted_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    client = mlflow.MlflowClient()
    if wanted_id:
        try:
            found = client.get_experiment(wanted_id)
        except mlflow.exceptions.MlflowException:
            found = None
        if found is None or found.lifecycle_stage != "active":
            what = "no experiment" if found is None else f"the deleted experiment {found.name!r}"
            raise UserError(
                f"MLFLOW_EXPERIMENT_ID={wanted_id[:40]} names {what} in {shown_uri()}; unset "
                "it (or set it to one that exists)"
            )
        if name and name != found.name:
            raise UserError(
                f"MLFLOW_EXPERIMENT_ID={wanted_id} is experiment {found.name!r} but "
                f"MLFLOW_EXPERIMENT_NAME={name}; unset one of them"
            )
        mlflow.set_experiment(experiment_id=wanted_id)
        return
    found = client.get_experiment_by_name(name or DEFAULT_EXPERIMENT)
    if found is not None and found.lifecycle_stage != "active":
        named = (
            f"MLFLOW_EXPERIMENT_NAME={name[:80]}"
            if name
            else f"the default experiment {DEFAULT_EXPERIMENT!r} (MLFLOW_EXPERIMENT_NAME unset)"
        )
        raise UserError(
            f"{named} is deleted in {shown_uri()}: restore it (mlflow experiments restore "
            f"--experiment-id {found.experiment_id}) or set MLFLOW_EXPERIMENT_NAME to another"
        )
    mlflow.set_experiment(name or DEFAULT_EXPERIMENT)


def check_credentials(uri: str, variable: str = "MLFLOW_TRACKING_URI") -> None:
    """Refuse a server URI with a password in it: MLflow prints the URI in its "View run ... at"
    lines, and a command line or log would show it too."""
    if uri.startswith(("http://", "https://")) and password(uri):
        raise UserError(
            f"{variable} {without_password(uri)}: holds a password, which "
            "MLflow prints with every run's link; leave it out and set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead"
        )


def check_server(uri: str, variable: str = "MLFLOW_TRACKING_URI") -> None:
    """Fail in seconds on a tracking server that does not answer: MLflow's client would retry
    with back-off for minutes before saying so."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10):
            pass
    except (OSError, ValueError) as e:  # refused, timed out, not HTTP, a malformed URL
        raise UserError(
            f"MLflow tracking server {uri} does not answer ({e}); start it "
            f"(mlflow server ...) or fix {variable}"
        ) from None


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def shown_uri() -> str:
    """The tracking URI as our lines show it: without a password (a database store's URI may
    hold one)."""
    return without_password(tracking_uri())


def look_at_it() -> str:
    """How to open the runs: the UI command and the experiment's runs page, or on a tracking
    server the server's own page (it is the UI). The link says workflowType=machine_learning:
    MLflow 3.17's UI opens an experiment on its GenAI view unless the link (or its "Model
    training" switch, remembered by the browser) says otherwise."""
    experiment = os.environ.get("MLFLOW_EXPERIMENT_ID")  # set by mlflow run and set_experiment
    uri = shown_uri()
    server = uri.startswith(("http://", "https://"))
    # the server's address for a browser: no user name (MLflow reads it from the environment)
    parts = urlsplit(uri)
    ui = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl() if server else ""
    ui = ui.rstrip("/") or "http://127.0.0.1:5000"
    page = (
        f"{ui}/#/experiments/{experiment}/runs?workflowType=machine_learning" if experiment else ui
    )
    if server:
        return f"Look at it: {page}"
    return f"Look at it: mlflow ui --backend-store-uri {uri}" + (
        f", then {page}" if experiment else ""
    )


def log_files(paths: list[Path], artifact_path: str) -> None:
    """Files into the run `mlflow run` started (prepare's sample grids)."""
    configure(experiment=False)  # the variables `mlflow run` set, checked
    with lifecycle.tracked_run("prepare"):
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path)
