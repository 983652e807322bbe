"""`replicate`: the study's experiments over several seeds, grouped in MLflow, and the report.

One top-level run ("replicate", or the project's run under `mlflow run`, opened with
tracking/lifecycle.py's `tracked_run`) holds the report; one nested run per table
(replication/tables.py) holds that table's variants: a variant several tables share is trained
once, under the first table that needs it, and the later tables name its runs in runs.json.
Every training is `tracklog.train_run`, the same as `train`, tagged `variant`, `seed`.

The trainings run in `workers` spawned processes (replication/pool.py), each with its share of
the threads, longest first. Ctrl-C or SIGTERM ends the running trainings KILLED, the rest are not
started, and the table and top-level runs end KILLED. The report goes to `--out` only where
replication/report/folder.py allows it, checked before anything trains.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import mlflow
import torch
from mlflow.exceptions import MlflowException

from pipeline.core.config import MODELS
from pipeline.core.data import FashionMNIST
from pipeline.core.metrics import TEST_ACC, VAL_ACC
from pipeline.core.training import pick_device
from pipeline.replication.experiments import VARIANTS, variant_keys
from pipeline.replication.pool import Job, plan, subset, train_all
from pipeline.replication.replicate_settings import ReplicateSettings
from pipeline.replication.report.folder import check_out_dir, write_report
from pipeline.replication.report.inputs import ReportInput, SeedRun, TunedRow, read_results
from pipeline.replication.tables import TableRuns, summary_metrics
from pipeline.tracking import lifecycle
from pipeline.tracking.registered import CHAMPION_ALIAS, champion_uri, registry_name
from pipeline.tuning.pareto import read_latest
from pipeline.tuning.registry.logged_models import TRIAL_TAG
from pipeline.tuning.tune_settings import STUDY_TAG


def machine(settings: ReplicateSettings | None = None) -> str:
    """The CPU or GPU, torch and how the threads are shared: the report's "Machine:"."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = pick_device()
    name = torch.cuda.get_device_name() if device.type == "cuda" else cpu
    if settings is None:
        return (
            f"{os.cpu_count()} cores, {name}, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads on {device.type}"
        )
    return (
        f"{os.cpu_count()} cores, {name}, torch {torch.__version__} on {device.type}, "
        f"{settings.workers} training process{'es' if settings.workers > 1 else ''} of "
        f"{settings.threads} thread{'s' if settings.threads > 1 else ''} at once (times "
        "per run are under that sharing)"
    )


class Progress:
    """One line per finished training, with the count and the elapsed time."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def __call__(self, label: str, seed: int, run: SeedRun) -> None:
        self.done += 1
        f = run.final
        print(
            f"[{self.done}/{self.total}, {(time.perf_counter() - self.start) / 60:.1f} min] "
            f"{label}, seed {seed}: val {100 * f[VAL_ACC]:.2f}%, test "
            f"{100 * f[TEST_ACC]:.2f}%, {run.train_time_s:.0f} s",
            flush=True,
        )


def tuned_champions() -> list[TunedRow]:
    """The registered champions of `tune`, where studies have run."""
    client = mlflow.MlflowClient()
    rows = []
    for model in MODELS:
        name = registry_name(model)
        try:
            version = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
        except MlflowException:
            continue
        try:
            rows.append(
                TunedRow(
                    f"{model} ({version.tags.get(STUDY_TAG, '?')} trial "
                    f"{version.tags.get(TRIAL_TAG, '?')})",
                    champion_uri(model),
                    version.run_id or "",
                    float(version.tags[VAL_ACC]),
                    float(version.tags[TEST_ACC]),
                )
            )
        except (KeyError, ValueError):
            continue  # a version registered by hand, without our tags
    return rows


def latest_frontier() -> dict | None:
    """The latest frontier study's trials (tuning/pareto.py), where one has run; a store
    error costs the report that section, not the hour of training before it."""
    try:
        return read_latest()
    except Exception as e:
        print(f"warning: no frontier section: {type(e).__name__}: {e}")
        return None


def replicate(settings: ReplicateSettings, data: FashionMNIST) -> tuple[str, Path]:
    """Train every variant with every seed, write the report to `settings.out_dir` and log it
    to the top-level run. Returns that run's id and the report's path."""
    check_out_dir(settings.out_dir)
    start = time.perf_counter()
    data = subset(data, settings.train_size)
    seeds = list(range(settings.seeds))
    with lifecycle.tracked_run("replicate", tags={"replicate": "true"}) as top:
        lifecycle.log_new_params({**settings.params(), "train_size": len(data.train)})
        tables = TableRuns(
            settings, top.info.experiment_id, top.info.run_id, seeds, len(data.train)
        )
        with tables.ending():
            runs = train_every_seed(settings, tables, seeds)
        report = ReportInput(
            runs=runs,
            seeds=seeds,
            epochs=settings.epochs,
            cnn_epochs=settings.cnn_epochs,
            quick=settings.quick,
            train_size=len(data.train),
            machine=machine(settings),
            wall_s=time.perf_counter() - start,
            tuned=tuned_champions(),
            table_run_ids=tables.run_ids,
            frontier=latest_frontier(),
        )
        path = write_report(report, settings.out_dir)
        mlflow.log_artifacts(str(settings.out_dir), "report")
        mlflow.log_metrics({"wall_time_s": report.wall_s, **summary_metrics(runs, runs)})
        return top.info.run_id, path


def train_every_seed(
    settings: ReplicateSettings, tables: TableRuns, seeds: list[int]
) -> dict[str, list[SeedRun]]:
    """Every variant x seed trained in the worker pool, each table closed as it completes;
    the runs by variant, in the tables' order, each variant's by seed."""
    runs: dict[str, list[SeedRun]] = {}
    jobs = plan(settings, seeds, tables.run_ids, tables.top_run_id)
    progress = Progress(len(jobs))

    def done(job: Job, run: SeedRun) -> None:
        runs.setdefault(job.key, []).append(run)
        runs[job.key].sort(key=lambda r: r.seed)
        progress(VARIANTS[job.key].label, job.seed, run)
        tables.trained(runs)

    train_all(settings, jobs, tables.experiment_id, done)
    return {key: runs[key] for key in variant_keys()}


def render(results_path: Path, out_dir: Path) -> Path:
    """Rebuild the report from a results.json of an earlier call, without training."""
    check_out_dir(out_dir)
    return write_report(read_results(results_path), out_dir)
