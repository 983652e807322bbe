"""What a tracking server with MLflow's basic-auth app lets this user do, asked before anything
is written: a user who may not write the experiment, or manage the registered model `tune`
registers into, is one line at the start rather than a 403 in the middle of a study."""

from __future__ import annotations

import os

import mlflow

from pipeline.core.errors import UserError

WRITE_PERMISSIONS = ("EDIT", "MANAGE")  # MLflow basic-auth's levels that may log runs


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
    permission = _permission(uri, "experiment", experiment_id)
    if permission is not None and permission not in WRITE_PERMISSIONS:
        raise UserError(refused(uri, 403))


def check_can_register(model_name: str) -> None:
    """`tune` registers its champion at its end, and deletes a version two workers registered
    at once: a user without MANAGE on an existing registered model is one line before the
    study, not a 403 after an hour of trials. (A model that does not exist yet is theirs to
    create: MLflow gives its creator MANAGE.)"""
    uri = mlflow.get_tracking_uri()
    try:
        mlflow.MlflowClient().get_registered_model(model_name)
    except mlflow.exceptions.MlflowException:
        return  # none yet (or no server to ask, which configure has refused already)
    permission = _permission(uri, "registered_model", model_name)
    if permission is not None and permission != "MANAGE":
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        raise UserError(
            f"MLflow tracking server {uri} gives user {user!r} {permission} on the registered "
            f"model {model_name!r}, where tune needs MANAGE to register its champion; its admin "
            "grants it (python -m pipeline.tracking.access, docs/scaling-out.md)"
        )


def _permission(uri: str, resource_type: str, resource_id: str) -> str | None:
    """The basic-auth app's permission of this user on the resource; None where nothing is
    checked: no server, no user, an admin, or a server without the app."""
    if not uri.startswith(("http://", "https://")):
        return None
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(uri)
    if not creds.username:
        return None  # a server without authentication; or its 401 has stopped us already
    me = http_request(creds, "/api/3.0/mlflow/users/current/permissions", "GET")
    if me.status_code != 200 or me.json().get("is_admin"):
        return None  # 404: no basic-auth app
    answer = http_request(
        creds,
        "/api/3.0/mlflow/users/permissions/get",
        "GET",
        params={
            "username": creds.username,
            "resource_type": resource_type,
            "resource_id": resource_id,
        },
    )
    return answer.json().get("permission") if answer.status_code == 200 else None
