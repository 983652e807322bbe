"""The workers' user on a tracking server run with MLflow's basic-auth app, made by its admin.

    export MLFLOW_TRACKING_URI=https://MLFLOWHOST MLFLOW_TRACKING_USERNAME=admin
    read -rs MLFLOW_TRACKING_PASSWORD && export MLFLOW_TRACKING_PASSWORD   # the admin's
    python -m pipeline.tracking.access tuner --experiment fashion-mnist --model fashion-mnist-fcn

asks for the new user's password (or reads it from standard input when that is no terminal),
creates the user unless it exists, the experiment and the registered model unless they exist,
and gives the user MANAGE on both and on nothing else. MANAGE, not EDIT: `tune` deletes as well
as writes (the files of trial models beyond --keep-models, a version registered twice when two
workers end together), and MLflow's EDIT cannot delete. No password is ever an argument.
"""

from __future__ import annotations

import argparse
import getpass
import sys

import mlflow
from mlflow.exceptions import MlflowException

WORKER_PERMISSION = "MANAGE"


def grant_workers(uri: str, user: str, password: str, experiment: str, model: str) -> str:
    """On the server `uri`, as the admin whose credentials MLflow reads (MLFLOW_TRACKING_USERNAME
    / _PASSWORD): the user, the experiment and the registered model, each made unless it
    exists, and the user's permission on both. Returns the experiment's id."""
    from mlflow.server.auth.client import AuthServiceClient  # needs Flask-WTF (mlflow[auth])

    auth, client = AuthServiceClient(uri), mlflow.MlflowClient(uri)
    if not exists(lambda: auth.get_user(user)):
        auth.create_user(user, password)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    if not exists(lambda: client.get_registered_model(model)):
        client.create_registered_model(model)
    grant(auth, user, "experiment", experiment_id)
    grant(auth, user, "registered_model", model)
    return experiment_id


def grant(auth, user: str, resource_type: str, resource_id: str) -> None:
    """WORKER_PERMISSION for `user` on the resource; again is harmless, and a grant of another
    level is replaced."""
    if auth.get_user_permission(user, resource_type, resource_id).permission == WORKER_PERMISSION:
        return
    try:
        auth.grant_user_permission(user, resource_type, resource_id, WORKER_PERMISSION)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.revoke_user_permission(user, resource_type, resource_id)
        auth.grant_user_permission(user, resource_type, resource_id, WORKER_PERMISSION)


def exists(get) -> bool:
    try:
        get()
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("user", help="the workers' user (MLFLOW_TRACKING_USERNAME on workers)")
    parser.add_argument("--experiment", default="fashion-mnist")
    parser.add_argument(
        "--model",
        default="fashion-mnist-fcn",
        help="the registered model tune registers the champion in",
    )
    args = parser.parse_args()
    password = (
        getpass.getpass(f"password for {args.user}: ")
        if sys.stdin.isatty()
        else sys.stdin.readline().rstrip("\n")
    )
    if not password:
        fail("no password given for the new user")
    try:
        experiment_id = grant_workers(
            mlflow.get_tracking_uri(), args.user, password, args.experiment, args.model
        )
    except MlflowException as e:  # not the admin, a password the server's policy refuses...
        fail(str(e).splitlines()[0][:300])
    print(
        f"{args.user}: {WORKER_PERMISSION} on experiment {args.experiment} ({experiment_id}) "
        f"and registered model {args.model}"
    )


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
