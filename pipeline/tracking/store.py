"""Where runs go: the tracking store and experiment, checked before anything is written.

Defaults: the embedded SQLite file `mlflow.db` in the working directory (override with
MLFLOW_TRACKING_URI) and the experiment "fashion-mnist" (MLFLOW_EXPERIMENT_NAME). Opening the
store also closes the runs a dead process of this host left RUNNING (tracking/orphans.py).
A tracking server's credentials come from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD
(or ~/.mlflow/credentials), never from the URI, which MLflow prints; every line of ours names the
store without a password (`shown_uri`).
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import mlflow

from pipeline.core.credentials import password, without_password
from pipeline.core.errors import UserError
from pipeline.tracking import orphans
from pipeline.tracking.lifecycle import tracked_run

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "fashion-mnist"
WRITE_PERMISSIONS = ("EDIT", "MANAGE")  # MLflow basic-auth's levels that may log runs


def configure(experiment: bool = True) -> None:
    """Point MLflow at the store and (unless `experiment` is False: nothing is written yet)
    the experiment; leave both alone under `mlflow run`.

    `mlflow run` has already created the run (MLFLOW_RUN_ID) in its own experiment: calling
    set_experiment then would clash with that run, so we only set it for direct CLI calls.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # noise in logs
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(DEFAULT_TRACKING_URI)
    uri = mlflow.get_tracking_uri()
    check_credentials(uri)
    check_server(uri)
    if experiment and not os.environ.get("MLFLOW_RUN_ID"):
        try:
            set_experiment()
        except mlflow.exceptions.MlflowException as e:  # an unknown scheme, a bad path
            if e.get_http_status_code() in (401, 403):
                raise UserError(refused(uri, e.get_http_status_code())) from None
            raise UserError(
                f"MLFLOW_TRACKING_URI {shown_uri()}: unusable ({str(e).splitlines()[0][:160]})"
            ) from None
        check_can_write(uri, os.environ["MLFLOW_EXPERIMENT_ID"])  # set by set_experiment
    if experiment:
        orphans.close_orphans()


def set_experiment() -> None:
    """MLFLOW_EXPERIMENT_NAME (default fashion-mnist), or MLFLOW_EXPERIMENT_ID when only that is
    set; both set and naming different experiments is one line, not MLflow's traceback at the
    first run (a stale MLFLOW_EXPERIMENT_ID exported in a shell)."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    wanted_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    if wanted_id:
        try:
            found = mlflow.MlflowClient().get_experiment(wanted_id)
        except mlflow.exceptions.MlflowException:
            found = None
        if found is None or found.lifecycle_stage != "active":
            raise UserError(
                f"MLFLOW_EXPERIMENT_ID={wanted_id} names no active experiment in "
                f"{shown_uri()}; unset it (or set it to one that "
                "exists)"
            )
        if name and name != found.name:
            raise UserError(
                f"MLFLOW_EXPERIMENT_ID={wanted_id} is experiment {found.name!r} but "
                f"MLFLOW_EXPERIMENT_NAME={name}; unset one of them"
            )
        mlflow.set_experiment(experiment_id=wanted_id)
        return
    mlflow.set_experiment(name or DEFAULT_EXPERIMENT)


def check_credentials(uri: str) -> None:
    """Refuse a server URI with a password in it: MLflow prints the URI in its "View run ... at"
    lines, and a command line or log would show it too."""
    if uri.startswith(("http://", "https://")) and password(uri):
        raise UserError(
            f"MLFLOW_TRACKING_URI {without_password(uri)}: holds a password, which "
            "MLflow prints with every run's link; leave it out and set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead"
        )


def refused(uri: str, status: int) -> str:
    """The line for a tracking server that refused us: who we were and how to change it."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    who = f"user {user!r} (MLFLOW_TRACKING_USERNAME)" if user else "no user"
    if status == 401:
        return (
            f"MLflow tracking server {uri} refused {who} (401: not authenticated); set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of its "
            "basic-auth app"
        )
    return (
        f"MLflow tracking server {uri} denied {who} (403: may not write to the "
        "experiment); its admin grants the permissions (python -m pipeline.tracking.access, "
        "docs/scaling-out.md)"
    )


def check_can_write(uri: str, experiment_id: str) -> None:
    """On a server with MLflow's basic-auth app, where any user may read (its default
    permission), a user who may not write to the experiment is one line now rather than a 403
    in the middle of a study. Asks the server itself, as the user: are they an admin, and else
    what may they do on the experiment (MLflow's own resolution of their grants)."""
    if not uri.startswith(("http://", "https://")):
        return
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(uri)
    if not creds.username:
        return  # a server without authentication; or its 401 has stopped us already
    me = http_request(creds, "/api/3.0/mlflow/users/current/permissions", "GET")
    if me.status_code != 200 or me.json().get("is_admin"):
        return  # 404: no basic-auth app
    permission = http_request(
        creds,
        "/api/3.0/mlflow/users/permissions/get",
        "GET",
        params={
            "username": creds.username,
            "resource_type": "experiment",
            "resource_id": experiment_id,
        },
    )
    if (
        permission.status_code == 200
        and permission.json().get("permission") not in WRITE_PERMISSIONS
    ):
        raise UserError(refused(uri, 403))


def check_server(uri: str) -> None:
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
            "(mlflow server ...) or fix MLFLOW_TRACKING_URI"
        ) from None


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def shown_uri() -> str:
    """The tracking URI as our lines show it: without a password (a database store's URI may
    hold one)."""
    return without_password(tracking_uri())


def look_at_it() -> str:
    """How to open the runs: the UI command and the experiment's runs page. The link says
    workflowType=machine_learning: MLflow 3.17's UI opens an experiment on its GenAI view unless
    the link (or its "Model training" switch, remembered by the browser) says otherwise."""
    experiment = os.environ.get("MLFLOW_EXPERIMENT_ID")  # set by mlflow run and set_experiment
    page = (
        f", then http://127.0.0.1:5000/#/experiments/{experiment}/runs?"
        "workflowType=machine_learning"
        if experiment
        else ""
    )
    return f"Look at it: mlflow ui --backend-store-uri {shown_uri()}{page}"


def log_files(paths: list[Path], artifact_path: str) -> None:
    """Files into the run `mlflow run` started (prepare's sample grids)."""
    with tracked_run("prepare"):
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path)
