"""What `tune` does once its options are checked: resolve the settings, check storage and
tracking (and with --ray the cluster), start any helper workers or Ray tasks, run the study,
print its summary.

Every check that can fail on user input runs before the study or an MLflow run is created.
The storage's password, when its URL holds one, is never printed, logged or passed on a command
line (core/credentials.py); under `mlflow run`, which logs the URL itself, it is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses

from pipeline.core.errors import Stopped, UserError
from pipeline.tuning.tune_settings import TuneOptions


def tune(opts: TuneOptions) -> None:
    """Run (or resume) an Optuna study; each trial is a nested MLflow run; register the best.

    Many workers, on one machine or many, cooperate on one study when they share --storage (a
    database) and --study-name: start the same command on each (--workers starts several here).
    """
    from pipeline.core.credentials import without_password
    from pipeline.tuning.workers.processes import helper_storage

    if opts.helper_of:
        opts = dataclasses.replace(opts, storage=helper_storage(opts.storage))
    if opts.ray:
        from pipeline.tuning.workers.ray_tasks import here

        opts = here(opts)
    settings = opts.resolve()
    from pipeline.core import data
    from pipeline.core.errors import first_line
    from pipeline.tracking import permissions, store
    from pipeline.tracking.registered import registry_name
    from pipeline.tuning.search import budget
    from pipeline.tuning.search.largest import check_space_fits
    from pipeline.tuning.search.sampler import open_study
    from pipeline.tuning.study import stopped_line
    from pipeline.tuning.study import tune as run_study
    from pipeline.tuning.summary import summary
    from pipeline.tuning.workers import processes
    from pipeline.tuning.workers.storage import check_storage, lost_storage, refuse_logged_password

    store.configure(experiment=False)  # a stale MLFLOW_RUN_ID is not `mlflow run`'s: say so
    refuse_logged_password(opts.storage)  # mlflow run has logged it: before anything of ours
    with ray_cluster(opts, settings) as cluster:  # its refusals, too, before anything is written
        dataset = data.load(opts.data_dir)
        if not settings.helper_of:  # before the study and any run: a model too big for memory
            check_space_fits(settings)
        storage = check_storage(settings)  # storage errors surface before any MLflow write
        store.configure()  # and tracking errors before the study is created
        if not settings.helper_of and len(settings.directions) == 1:  # it registers a champion
            permissions.check_can_register(registry_name(settings.model))
        settings = budget.fit(settings, dataset, storage, epochs_given=opts.epochs > 0)
        team = (
            cluster.tasks(
                ray_worker,
                processes.worker_options(opts, settings),
                settings.space.path.read_text(),
            )
            if cluster
            else helpers(opts, settings)
        )
        try:
            study = run_study(settings, dataset, open_study(settings, storage), team)
        except KeyboardInterrupt as stop:
            raise Stopped(stopped_line(stop, team is not None)) from None
        except Exception as e:
            lost = lost_storage(e)  # the database went away mid-study
            if lost is None:
                raise
            raise UserError(
                f"storage {without_password(opts.storage)}: lost the database "
                f"({first_line(lost.__cause__ or lost)}); completed trials are "
                "kept: run the same command again to resume"
            ) from None
    if settings.helper_of:
        return  # the main worker prints the summary
    print(summary(study, settings))
    print(
        f"{store.look_at_it()}; and python -m pipeline dashboard --storage "
        f"{without_password(opts.storage)}"
    )


def ray_cluster(opts: TuneOptions, settings):
    """With --ray: the Ray cluster whose tasks are this call's workers (joined or started,
    left at the end); otherwise None."""
    if not opts.ray:
        return contextlib.nullcontext(None)
    from pipeline.tuning.workers import ray_tasks

    return ray_tasks.cluster(opts.ray, settings.storage)


def ray_worker(opts: TuneOptions, space_text: str, threads: int) -> None:
    """One Ray task of `tune --ray`, in a Ray worker process: the worker loop a `tune --workers`
    helper runs (tuning/workers/ray_tasks.py), on `threads` threads, with the driver's search
    space written here (the task's node may not have the driver's file)."""
    import os
    import signal
    import tempfile
    from pathlib import Path

    import torch

    from pipeline.core import interrupt

    os.environ.pop("MLFLOW_RUN_ID", None)  # `mlflow run`'s run belongs to the driver
    # ray.cancel raises through the SIGINT handler: ours keeps the raise out of database
    # writes. Ray's own SIGTERM handler stays: it is how Ray ends its worker processes.
    interrupt.reset()
    interrupt.install((signal.SIGINT,))
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="tune-space-") as folder:
        space = Path(folder) / Path(opts.space).name
        space.write_text(space_text)
        tune(dataclasses.replace(opts, space=str(space)))


def helpers(opts: TuneOptions, settings):
    """With --workers N: the N-1 helper processes (started by tuning.tune once the study and
    the parent run exist); this process and they share the threads. None with one worker."""
    if settings.workers < 2:
        return None
    import torch

    from pipeline.core.credentials import password
    from pipeline.core.training import share_threads
    from pipeline.tuning.workers import processes

    torch.set_num_threads(share_threads(settings.workers))
    return processes.Helpers(
        processes.helper_argv(opts, settings), torch.get_num_threads(), password(opts.storage)
    )
