"""`replicate`'s trainings in worker processes: the plan (every variant x seed once, longest
first) and the pool that runs it.

The workers are spawned (no fork of a process whose OpenMP pool is running); each loads the data
once, takes its share of the threads and trains the jobs it is sent, each as
`tracklog.train_run` under its table's run. Stop requests are core/interrupt.py's while a job
trains: Ctrl-C (which reaches the whole process group) or the parent's SIGTERM stops the
training, whose run ends KILLED, and the worker starts no later job (so do the other stop
signals of core/interrupt.py, a closed terminal's SIGHUP among them). Between jobs a signal is
only recorded (raising there would kill the worker inside the pool's own loop, with a
traceback): the next job sees it and does not start. When the replicate process dies without a
word (kill -9, the OOM killer), Linux sends each worker SIGTERM (core/interrupt.py
`follow_parent`): its training ends KILLED, and the worker exits.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

import mlflow
import torch
from mlflow.entities import Metric

from pipeline.core import data as datasets
from pipeline.core import interrupt
from pipeline.core.data import CLASSES, FashionMNIST, Split
from pipeline.core.stats import per_class
from pipeline.replication.experiments import TABLES, VARIANTS
from pipeline.replication.replicate_settings import ReplicateSettings
from pipeline.replication.report.inputs import SeedRun
from pipeline.serving.evaluate import slug
from pipeline.tracking import log as tracklog


@dataclass(frozen=True)
class Job:
    """One training: a variant with a seed, logged under its table's run."""

    key: str
    seed: int
    table: int
    table_run_id: str
    top_run_id: str


def plan(
    settings: ReplicateSettings, seeds: list[int], table_runs: dict[int, str], top_run_id: str
) -> list[Job]:
    """Every variant x seed once, under the first table that needs it; longest first (the CNN),
    so that the last minutes are not one long training on one worker."""
    jobs, seen = [], set()
    for table in TABLES:
        for key in table.variants:
            if key not in seen:
                seen.add(key)
                jobs += [
                    Job(key, seed, table.number, table_runs[table.number], top_run_id)
                    for seed in seeds
                ]
    return sorted(jobs, key=lambda job: settings.config(job.key, 0).model == "fcn")


def subset(data: FashionMNIST, n: int | None) -> FashionMNIST:
    """The first `n` training images (all with None); validation and test stay whole."""
    if n is None or n >= len(data.train):
        return data
    return FashionMNIST(
        Split(data.train.images[:n], data.train.labels[:n]), data.val, data.test, data.digest
    )


def train_seed(settings: ReplicateSettings, job: Job, data: FashionMNIST) -> SeedRun:
    """Train one job in its own run, then log its per-class test accuracy and confusion counts."""
    config = settings.config(job.key, job.seed)
    variant = VARIANTS[job.key]
    trained = tracklog.train_run(
        config,
        data,
        nested=True,
        parent_run_id=job.table_run_id,
        confusion=False,
        run_name=f"{variant.label}, seed {job.seed}",
        tags={
            "replicate_run": job.top_run_id,
            "variant": job.key,
            "seed": str(job.seed),
            "replicate_table": str(job.table),
        },
    )
    run_id, result = trained.run_id, trained.result
    counts = tracklog.model_confusion(result.model, data.test)
    recall = per_class(counts)["recall"]
    client = mlflow.MlflowClient()
    now = int(1000 * time.time())
    client.log_batch(
        run_id,
        metrics=[
            Metric(f"test_acc_{slug(c)}", float(r), now, config.epochs)
            for c, r in zip(CLASSES, recall)
        ],
        synchronous=True,
    )
    client.log_dict(
        run_id, {"classes": list(CLASSES), "counts": counts.tolist()}, "test_confusion_counts.json"
    )
    return SeedRun(job.key, job.seed, run_id, result.history, result.train_time_s, counts)


# A worker process's state. Handlers stay Python functions: switching to SIG_IGN while a second
# signal is pending raises "OSError: Signal 15 ignored due to race condition".
_WORKER_DATA: FashionMNIST | None = None
_stopped_between_jobs: list[int] = []  # signals received while no job trained


_parent: list[int] = []  # the replicate process's pid


def _hold(signum, frame) -> None:
    _stopped_between_jobs.append(signum)
    _end_if_orphaned()


def _end_if_orphaned() -> None:
    """The replicate process is gone (kill -9, the OOM killer): no job will come, and none
    runs now (its run is closed), so this worker ends rather than wait for good on the pool's
    queue, whose ends it holds itself."""
    if _parent and os.getppid() != _parent[0]:
        os._exit(1)


def _hold_signals() -> None:
    for signum in interrupt.STOP_SIGNALS:  # a closed terminal's SIGHUP reaches the workers too
        if signal.getsignal(signum) != signal.SIG_IGN:  # `nohup replicate` stays so
            signal.signal(signum, _hold)


def _start_worker(
    settings: ReplicateSettings, tracking_uri: str, experiment_id: str, parent: int
) -> None:
    global _WORKER_DATA
    _parent.append(parent)
    _hold_signals()
    interrupt.follow_parent(parent)  # SIGTERM when the replicate process dies, however it dies
    os.environ.pop("MLFLOW_RUN_ID", None)  # `mlflow run`'s run is the parent's top-level run
    torch.set_num_threads(settings.threads)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    _WORKER_DATA = subset(datasets.load(settings.data_dir), settings.train_size)
    _end_if_orphaned()  # the parent died while this worker started


def _train_job(settings: ReplicateSettings, job: Job) -> SeedRun:
    interrupt.install()  # first, so that no signal falls between the check and the training
    try:
        if _stopped_between_jobs:
            raise interrupt.Interrupted(
                f"not started: stopped by signal {signal.Signals(_stopped_between_jobs[0]).name}"
            )
        interrupt.check()  # stopped during an earlier job of this worker
        assert _WORKER_DATA is not None  # loaded by _start_worker, the pool's initializer
        return train_seed(settings, job, _WORKER_DATA)
    finally:
        _hold_signals()
        _end_if_orphaned()


def train_all(
    settings: ReplicateSettings,
    jobs: list[Job],
    experiment_id: str,
    done: Callable[[Job, SeedRun], None],
) -> None:
    """Train `jobs` in `settings.workers` processes; `done(job, run)` as each one ends.
    On any exception (Ctrl-C included) the waiting jobs are dropped and the running ones
    stopped (their runs end KILLED) before it propagates."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        settings.workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(settings, mlflow.get_tracking_uri(), experiment_id, os.getpid()),
    )
    pending: dict[Future, Job] = {}
    try:
        pending = {pool.submit(_train_job, settings, job): job for job in jobs}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                done(pending.pop(future), future.result())
    except BaseException:
        for future in pending:
            future.cancel()
        for child in context.active_children():
            child.terminate()  # SIGTERM: a running training ends its run KILLED
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
