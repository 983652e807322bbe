"""A tracked run's life, written once: start (or adopt `mlflow run`'s run), tag, end.

`tracked_run(...)` is the one context manager that train, tune, evaluate and replicate open
their runs with. It adopts only the run `mlflow run` has just made for this command
(`check_adoptable`), never another run a stale MLFLOW_RUN_ID names. The run ends FINISHED on
success; KILLED on Ctrl-C or SIGTERM; FAILED on any other exception, unless it is one of
`finished_on` (a pruned trial ends normally). Every end other than FINISHED carries the tag
`end_reason`. Each run records the host and process that
owns it (`owner_host`, `owner_pid`), so a run whose process died without a word (kill -9, OOM)
can be closed by the next command (pipeline/tracking/orphans.py). Training runs (and so tune's
trials) also get MLflow's system metrics: CPU, memory, disk, network and, where there is one,
GPU, sampled every 5 s in a thread of MLflow's (`system/...` metrics, the run page's "System
metrics" tab). MLflow's own variables turn them off (MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false)
or change the interval (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.environment_variables import (
    MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING,
    MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL,
)
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_ENTRY_POINT, MLFLOW_SOURCE_TYPE

from pipeline.core import databases
from pipeline.core.credentials import without_password
from pipeline.core.errors import UserError, first_line
from pipeline.tracking import orphans
from pipeline.tracking.tags import END_REASON

# What an experiment is for, in MLflow 3's terms. MLflow 3.17's UI shows it in its kind selector
# but opens experiments on its own GenAI / Model training switch (store.look_at_it's links say
# which); its code reads the tag only where that switch is turned off.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
# MLflow samples every 10 s by default, which leaves a 20-s trial one point or none.
SYSTEM_METRICS_INTERVAL_S = 5.0
# Its sampler says "Started monitoring system metrics." and three more lines at INFO for every
# run: a study's terminal would drown in them. Warnings still show.
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)


def adopted() -> bool:
    """True under `mlflow run`, which has started this process's top-level run already (the
    run MLFLOW_RUN_ID names: `check_adoptable` refuses any other)."""
    return bool(os.environ.get("MLFLOW_RUN_ID"))


def check_adoptable() -> None:
    """Refuse, in one line naming the variable, an MLFLOW_RUN_ID that is not the run `mlflow
    run` has just started for this very command.

    The variable outlives `mlflow run` in a user's shell (an `export` copied from its output, a
    script), and MLflow's start_run would reopen whatever run it names: a FINISHED run renamed,
    its params kept and ours dropped, a second value for each metric step. So the run must be
    RUNNING, made by `mlflow run` (its source tags) for this entry point, in the experiment of
    MLFLOW_EXPERIMENT_ID / _NAME, and untouched: no command has taken it (owner tags) nor
    logged a metric to it. Nothing is written before the answer, and a refused variable is
    dropped from this process so that nothing of ours writes to that run afterwards (the CLI
    tags the run of a failed `mlflow run` with its error line)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    uri = mlflow.get_tracking_uri()
    path = databases.sqlite_path(uri)
    why: str | None = (
        f"names no run: there is no tracking store {without_password(uri)}"
        if path is not None and not path.is_file()
        else foreign_run(run_id, uri)
    )
    if why:
        del os.environ["MLFLOW_RUN_ID"]
        raise UserError(
            f"MLFLOW_RUN_ID={run_id[:40]} {why}; unset it (`mlflow run` sets it only for the "
            "command it starts)"
        )


def foreign_run(run_id: str, uri: str) -> str | None:
    """Why run `run_id` is not this command's own `mlflow run` run, or None."""
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return f"names no run in {without_password(uri)}"
    experiment = client.get_experiment(run.info.experiment_id)
    wanted_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    wanted_name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    tags, status, name = run.data.tags, run.info.status, repr(run.info.run_name)[:80]
    entry, command = tags.get(MLFLOW_PROJECT_ENTRY_POINT), this_command()
    if run.info.lifecycle_stage != "active" or experiment.lifecycle_stage != "active":
        return "is a deleted run (or of a deleted experiment)"
    if wanted_id and wanted_id != run.info.experiment_id:
        return (
            f"is a run of experiment {run.info.experiment_id}, not "
            f"MLFLOW_EXPERIMENT_ID={wanted_id[:40]}"
        )
    if wanted_name and wanted_name != experiment.name:
        return (
            f"is a run of experiment {experiment.name[:80]!r}, not "
            f"MLFLOW_EXPERIMENT_NAME={wanted_name[:80]}"
        )
    if status != "RUNNING":
        return f"is run {name}, {status} already"
    if tags.get(MLFLOW_SOURCE_TYPE) != "PROJECT" or entry is None:
        return f"is run {name}, which `mlflow run` did not start"
    if command is not None and entry != command:
        return f"is the run of `mlflow run -e {entry[:40]}`, not of {command[:40]}"
    owner = [tags.get(k) for k in (orphans.HOST_TAG, orphans.PID_TAG, orphans.START_TAG)]
    if any(owner) and owner != list(owner_tags().values()):
        return f"is run {name} of process {owner[1]} on {str(owner[0])[:80]}"
    if not any(owner) and run.data.metrics:
        return f"is run {name}, which holds metrics already"
    return None


def this_command() -> str | None:
    """The command this process runs, as MLproject's entry points start it (`python -m pipeline
    ENTRY ...`, ENTRY also the entry point's name), read from its command line; None in any
    other program (a test calling the library)."""
    program = Path(sys.argv[0])
    ours = program.name == "pipeline" or program.parts[-2:] == ("pipeline", "__main__.py")
    return sys.argv[1] if ours and len(sys.argv) > 1 else None


@contextmanager
def tracked_run(
    name: str,
    *,
    tags: dict[str, str] | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    finished_on: tuple[type[BaseException], ...] = (),
    system_metrics: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """The run named `name`, active inside the block. A top-level run adopts the one `mlflow
    run` started (MLFLOW_RUN_ID), renamed to `name`. `parent_run_id` nests it under a run that
    is not this process's active one (a replicate worker's table run, a tune helper's parent).
    `system_metrics`: MLflow's CPU/memory/GPU sampling while the run lasts, unless the user
    turned it off."""
    adopt = adopted() and not nested and parent_run_id is None
    if adopt:
        check_adoptable()
    run = mlflow.start_run(
        nested=nested,
        parent_run_id=parent_run_id,
        run_name=None if adopt else name,
        tags=tags,
        log_system_metrics=system_metrics and system_metrics_on(),
    )
    status, reason = "FAILED", None
    try:
        if not nested and parent_run_id is None:
            mark_training(run.info.experiment_id)
        mlflow.set_tags(
            {**({"mlflow.runName": name, **(tags or {})} if adopt else {}), **owner_tags()}
        )
        yield run
        status = "FINISHED"
    except BaseException as e:
        status, reason = outcome(e, finished_on)
        raise
    finally:
        end(run.info.run_id, status, reason)


def mark_training(experiment_id: str) -> None:
    """Tag the experiment as model training, unless it says what it is already (an experiment
    made before this tag existed gets it at its next run)."""
    client = mlflow.MlflowClient()
    if EXPERIMENT_KIND_TAG in client.get_experiment(experiment_id).tags:
        return
    try:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    except mlflow.exceptions.MlflowException:
        # Workers starting together insert the same tag: the loser finds it there.
        if EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags:
            raise


def system_metrics_on() -> bool:
    """MLflow's variable decides when it is set; otherwise on, every 5 s unless its interval
    variable says otherwise."""
    if MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.defined:
        return bool(MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get())
    if not MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL.defined:
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
    return True


def outcome(
    error: BaseException, finished_on: tuple[type[BaseException], ...] = ()
) -> tuple[str, str | None]:
    """The status and `end_reason` of a run left by `error`: KILLED for Ctrl-C / SIGTERM,
    FINISHED for an expected end (`finished_on`), FAILED for anything else."""
    if isinstance(error, KeyboardInterrupt):
        return "KILLED", str(error) or "interrupted (Ctrl-C)"
    if finished_on and isinstance(error, finished_on):
        return "FINISHED", None
    return "FAILED", f"{type(error).__name__}: {first_line(error)}"


def owner_tags() -> dict[str, str]:
    """Tags naming this process as a run's owner (tracking/orphans.py reads them)."""
    return {
        orphans.HOST_TAG: socket.gethostname(),
        orphans.PID_TAG: str(os.getpid()),
        orphans.START_TAG: orphans.process_start(os.getpid()),
    }


def end(run_id: str, status: str, reason: str | None = None) -> None:
    """End the active run `run_id` with `status`, tagging why when it did not finish.

    When it did not finish, an exception is on its way up (a stop request above all): a store
    error here (SQLite's "database is locked" under load) is one warning line instead of
    masking it; the run, if left RUNNING, is closed by the next command (tracking/orphans.py)."""
    try:
        if reason:
            mlflow.MlflowClient().set_tag(run_id, END_REASON, reason[:500])
        mlflow.end_run(status)
    except Exception as e:
        if status == "FINISHED":
            raise
        print(f"warning: MLflow run {run_id} not ended {status}: {first_line(e)}", file=sys.stderr)


def active_run() -> mlflow.ActiveRun:
    """The active run, for code that only runs inside one (none is a bug, not a user error)."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run")
    return run


def log_new_params(params: dict) -> None:
    """Log params in one call, skipping those the active run has already.

    `mlflow run` logs the entry point's parameters as the user spelled them ("1e-3"), and MLflow
    refuses to change a param, so ours ("0.001") may only add what it has not logged.
    """
    logged = mlflow.MlflowClient().get_run(active_run().info.run_id).data.params
    mlflow.log_params({k: v for k, v in params.items() if k not in logged})
