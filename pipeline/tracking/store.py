"""Where runs go: the tracking store and experiment, checked before anything is written.

Defaults: the embedded SQLite file `mlflow.db` in the working directory (override with
MLFLOW_TRACKING_URI) and the experiment "fashion-mnist" (MLFLOW_EXPERIMENT_NAME). Opening the
store also closes the runs a dead process of this host left RUNNING (tracking/orphans.py).
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import mlflow

from pipeline.core.errors import UserError
from pipeline.tracking import orphans
from pipeline.tracking.lifecycle import tracked_run

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "fashion-mnist"


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
    check_server(uri)
    if experiment and not os.environ.get("MLFLOW_RUN_ID"):
        try:
            set_experiment()
        except mlflow.exceptions.MlflowException as e:  # an unknown scheme, a bad path
            raise UserError(f"MLFLOW_TRACKING_URI {uri}: unusable "
                            f"({str(e).splitlines()[0][:160]})") from None
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
            raise UserError(f"MLFLOW_EXPERIMENT_ID={wanted_id} names no active experiment in "
                            f"{mlflow.get_tracking_uri()}; unset it (or set it to one that "
                            "exists)")
        if name and name != found.name:
            raise UserError(f"MLFLOW_EXPERIMENT_ID={wanted_id} is experiment {found.name!r} but "
                            f"MLFLOW_EXPERIMENT_NAME={name}; unset one of them")
        mlflow.set_experiment(experiment_id=wanted_id)
        return
    mlflow.set_experiment(name or DEFAULT_EXPERIMENT)


def check_server(uri: str) -> None:
    """Fail in seconds on a tracking server that does not answer: MLflow's client would retry
    with back-off for minutes before saying so."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10):
            pass
    except (OSError, ValueError) as e:  # refused, timed out, not HTTP, a malformed URL
        raise UserError(f"MLflow tracking server {uri} does not answer ({e}); start it "
                        "(mlflow server ...) or fix MLFLOW_TRACKING_URI") from None


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def look_at_it() -> str:
    """How to open the runs: the UI command and the experiment's runs page. The link says
    workflowType=machine_learning: MLflow 3.17's UI opens an experiment on its GenAI view unless
    the link (or its "Model training" switch, remembered by the browser) says otherwise."""
    experiment = os.environ.get("MLFLOW_EXPERIMENT_ID")  # set by mlflow run and set_experiment
    page = (f", then http://127.0.0.1:5000/#/experiments/{experiment}/runs?"
            "workflowType=machine_learning" if experiment else "")
    return f"Look at it: mlflow ui --backend-store-uri {tracking_uri()}{page}"


def log_files(paths: list[Path], artifact_path: str) -> None:
    """Files into the run `mlflow run` started (prepare's sample grids)."""
    with tracked_run("prepare"):
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path)
