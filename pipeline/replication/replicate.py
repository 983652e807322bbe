"""`replicate`: the study's experiments over several seeds, grouped in MLflow, and the report.

One top-level run ("replicate", or the project's run under `mlflow run`) holds the report; one
nested parent run per table holds that table's variants: a variant several tables share is
trained once, under the first table that needs it, and the later tables name its runs in
runs.json. Every training is `tracklog.train_run`, the same as `train`, tagged `variant`, `seed`.

The trainings run in `workers` spawned processes (training.default_workers), each with its share
of the threads, longest first. Ctrl-C or SIGTERM ends the running trainings KILLED, the rest are not
started, and the table and top-level runs end KILLED.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import shutil
import signal
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from pipeline.core import data as datasets
from pipeline.replication import report
from pipeline.tracking import log as tracklog
from pipeline.tracking import lifecycle
from pipeline.core.config import MODELS, UserError
from pipeline.core.data import CLASSES, FashionMNIST, Split
from pipeline.serving.evaluate import slug
from pipeline.replication.experiments import TABLES, VARIANTS, variant_keys
from pipeline.replication.stats import per_class
from pipeline.core.training import pick_device
from pipeline.replication.settings import ReplicateSettings

def machine(settings: ReplicateSettings | None = None) -> str:
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
        return (f"{os.cpu_count()} cores, {name}, torch {torch.__version__} with "
                f"{torch.get_num_threads()} threads on {device.type}")
    return (f"{os.cpu_count()} cores, {name}, torch {torch.__version__} on {device.type}, "
            f"{settings.workers} training process{'es' if settings.workers > 1 else ''} of "
            f"{settings.threads} thread{'s' if settings.threads > 1 else ''} at once (times "
            "per run are under that sharing)")


def subset(data: FashionMNIST, n: int | None) -> FashionMNIST:
    if n is None or n >= len(data.train):
        return data
    return FashionMNIST(Split(data.train.images[:n], data.train.labels[:n]), data.val, data.test,
                        data.digest)


class Progress:
    """One line per finished training, with the count and the elapsed time."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def __call__(self, label: str, seed: int, run: report.SeedRun) -> None:
        self.done += 1
        f = run.final
        print(f"[{self.done}/{self.total}, {(time.perf_counter() - self.start) / 60:.1f} min] "
              f"{label}, seed {seed}: val {100 * f['val_acc']:.2f}%, test "
              f"{100 * f['test_acc']:.2f}%, {run.train_time_s:.0f} s", flush=True)


@dataclass(frozen=True)
class Job:
    """One training: a variant with a seed, logged under its table's run."""

    key: str
    seed: int
    table: int
    table_run_id: str
    top_run_id: str


def plan(settings: ReplicateSettings, seeds: list[int], table_runs: dict[int, str],
         top_run_id: str) -> list[Job]:
    """Every variant x seed once, under the first table that needs it; longest first (the CNN),
    so that the last minutes are not one long training on one worker."""
    jobs, seen = [], set()
    for table in TABLES:
        for key in table.variants:
            if key not in seen:
                seen.add(key)
                jobs += [Job(key, seed, table.number, table_runs[table.number], top_run_id)
                         for seed in seeds]
    return sorted(jobs, key=lambda job: settings.config(job.key, 0).model == "fcn")


def train_seed(settings: ReplicateSettings, job: Job, data: FashionMNIST) -> report.SeedRun:
    config = settings.config(job.key, job.seed)
    variant = VARIANTS[job.key]
    run_id, result = tracklog.train_run(
        config, data, nested=True, parent_run_id=job.table_run_id, confusion=False,
        run_name=f"{variant.label}, seed {job.seed}",
        tags={"replicate_run": job.top_run_id, "variant": job.key, "seed": str(job.seed),
              "replicate_table": str(job.table)})
    counts = tracklog.confusion_counts(result.model, data.test)
    recall = per_class(counts)["recall"]
    client = mlflow.MlflowClient()
    now = int(1000 * time.time())
    client.log_batch(run_id, metrics=[Metric(f"test_acc_{slug(c)}", float(r), now, config.epochs)
                                      for c, r in zip(CLASSES, recall)], synchronous=True)
    client.log_dict(run_id, {"classes": list(CLASSES), "counts": counts.tolist()},
                    "test_confusion_counts.json")
    return report.SeedRun(job.key, job.seed, run_id, result.history, result.train_time_s, counts)


# The worker processes: spawned (no fork of a process whose OpenMP pool is running), each
# loads the data once and trains the jobs it is sent. A stop signal (Ctrl-C reaches the whole
# process group; the parent sends SIGTERM) stops the running training, whose run ends KILLED,
# and every later job the worker receives. Handlers stay Python functions: switching to SIG_IGN
# while a second signal is pending raises "OSError: Signal 15 ignored due to race condition".
_WORKER_DATA: FashionMNIST | None = None
_STOPPED = False


def _mark_stopped(signum, frame) -> None:
    global _STOPPED
    _STOPPED = True


def _stop_training(signum, frame) -> None:
    _on_stop_signals(_mark_stopped)  # the first signal stops the training, later ones only mark
    _mark_stopped(signum, frame)
    raise KeyboardInterrupt


def _on_stop_signals(handler) -> None:
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _start_worker(settings: ReplicateSettings, tracking_uri: str, experiment_id: str) -> None:
    global _WORKER_DATA
    _on_stop_signals(_mark_stopped)
    os.environ.pop("MLFLOW_RUN_ID", None)  # `mlflow run`'s run is the parent's top-level run
    torch.set_num_threads(settings.threads)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    _WORKER_DATA = subset(datasets.load(settings.data_dir), settings.train_size)


def _train_job(settings: ReplicateSettings, job: Job) -> report.SeedRun:
    if _STOPPED:
        raise KeyboardInterrupt  # a job queued before the stop: not started
    _on_stop_signals(_stop_training)
    try:
        return train_seed(settings, job, _WORKER_DATA)
    finally:
        _on_stop_signals(_mark_stopped)


def train_all(settings: ReplicateSettings, jobs: list[Job], experiment_id: str,
              done) -> None:
    """Train `jobs` in `settings.workers` processes; `done(job, run)` as each one ends.
    On any exception (Ctrl-C included) the waiting jobs are dropped and the running ones
    stopped (their runs end KILLED) before it propagates."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(settings.workers, mp_context=context, initializer=_start_worker,
                               initargs=(settings, mlflow.get_tracking_uri(), experiment_id))
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
            os.kill(child.pid, signal.SIGTERM)  # a running training ends its run KILLED
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def tuned_champions() -> list[report.TunedRow]:
    """The registered champions of `tune`, where studies have run."""
    client = mlflow.MlflowClient()
    rows = []
    for model in MODELS:
        name = f"fashion-mnist-{model}"
        try:
            version = client.get_model_version_by_alias(name, "champion")
        except MlflowException:
            continue
        try:
            rows.append(report.TunedRow(
                f"{model} ({version.tags.get('study_name', '?')} trial "
                f"{version.tags.get('trial_number', '?')})", f"models:/{name}@champion",
                version.run_id or "", float(version.tags["val_acc"]),
                float(version.tags["test_acc"])))
        except (KeyError, ValueError):
            continue  # a version registered by hand, without our tags
    return rows


def summary_metrics(runs: dict[str, list[report.SeedRun]], keys) -> dict[str, float]:
    out = {}
    for key in keys:
        for name in ("val_acc", "test_acc"):
            values = report.final_values(runs[key], name)
            out[f"{name}_mean.{key}"] = float(np.mean(values))
            if len(values) > 1:
                out[f"{name}_std.{key}"] = float(np.std(values, ddof=1))
    return out


def replicate(settings: ReplicateSettings, data: FashionMNIST) -> tuple[str, Path]:
    """Train every variant with every seed, write the report to `settings.out_dir` and log it
    to the top-level run. Returns that run's id and the report's path."""
    start = time.perf_counter()
    data = subset(data, settings.train_size)
    seeds = list(range(settings.seeds))
    runs: dict[str, list[report.SeedRun]] = {}
    resumed = bool(os.environ.get("MLFLOW_RUN_ID"))
    top = mlflow.start_run(run_name=None if resumed else "replicate",
                           tags={"replicate": "true"})
    if resumed:
        mlflow.set_tags({"mlflow.runName": "replicate", "replicate": "true"})
    lifecycle.log_new_params({**settings.params(), "train_size": len(data.train)})
    client = mlflow.MlflowClient()
    experiment_id = top.info.experiment_id
    table_runs = {table.number: client.create_run(experiment_id, tags={
        MLFLOW_PARENT_RUN_ID: top.info.run_id, MLFLOW_RUN_NAME: f"table {table.number}: "
        f"{table.title}", "replicate_table": str(table.number)}).info.run_id for table in TABLES}
    open_tables = dict(table_runs)
    jobs = plan(settings, seeds, table_runs, top.info.run_id)
    progress = Progress(len(jobs))

    def done(job: Job, run: report.SeedRun) -> None:
        runs.setdefault(job.key, []).append(run)
        runs[job.key].sort(key=lambda r: r.seed)
        progress(VARIANTS[job.key].label, job.seed, run)
        for table in TABLES:
            if table.number in open_tables and all(
                    len(runs.get(key, [])) == len(seeds) for key in table.variants):
                close_table(settings, table, open_tables.pop(table.number), runs, seeds,
                            len(data.train))

    status = "FAILED"
    try:
        train_all(settings, jobs, experiment_id, done)
        runs = {key: runs[key] for key in variant_keys()}  # the tables' order
        inputs = report.ReportInput(
            runs=runs, seeds=seeds, epochs=settings.epochs, cnn_epochs=settings.cnn_epochs,
            quick=settings.quick, train_size=len(data.train), machine=machine(settings),
            wall_s=time.perf_counter() - start, tuned=tuned_champions(),
            table_run_ids=table_runs)
        path = write_report(inputs, settings.out_dir)
        mlflow.log_artifacts(str(settings.out_dir), "report")
        mlflow.log_metrics({"wall_time_s": inputs.wall_s, **summary_metrics(runs, runs)})
        status = "FINISHED"
        return top.info.run_id, path
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        for run_id in open_tables.values():
            client.set_terminated(run_id, status if status != "FINISHED" else "FAILED")
        mlflow.end_run(status)


def close_table(settings: ReplicateSettings, table, run_id: str,
                runs: dict[str, list[report.SeedRun]], seeds: list[int], train_size: int) -> None:
    """A table whose variants are all trained: its figure, Markdown, run ids, metrics; FINISHED."""
    inputs = report.ReportInput(runs={k: runs[k] for k in table.variants}, seeds=seeds,
                                epochs=settings.epochs, cnn_epochs=settings.cnn_epochs,
                                quick=settings.quick, train_size=train_size, machine="")
    client = mlflow.MlflowClient()
    client.log_figure(run_id, report.table_figure(inputs, table), f"table_{table.number}.png")
    client.log_text(run_id, "\n".join(report.table_markdown(inputs, table)), "table.md")
    client.log_dict(run_id, {VARIANTS[k].label: {str(r.seed): r.run_id for r in runs[k]}
                             for k in table.variants}, "runs.json")
    now = int(1000 * time.time())
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in
                                      summary_metrics(runs, table.variants).items()],
                     synchronous=True)
    client.set_terminated(run_id, "FINISHED")


def write_report(inputs: report.ReportInput, out_dir: Path) -> Path:
    """report.md, report.html (self-contained), figures/*.png and results.json, written in a
    temporary folder and moved into place, so a failure leaves no half-written report."""
    figures = {name: report.png(fig) for name, fig in report.figures(inputs).items()}
    text = report.markdown(inputs)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir.parent))
    (tmp / "figures").mkdir()
    for name, content in figures.items():
        (tmp / "figures" / name).write_bytes(content)
    (tmp / "report.md").write_text(text)
    (tmp / "report.html").write_text(report.to_html(text, figures))
    (tmp / "results.json").write_text(json.dumps(report.to_json(inputs)))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir / "report.md"


def render(results_path: Path, out_dir: Path) -> Path:
    """Rebuild the report from a results.json of an earlier call, without training."""
    try:
        inputs = report.from_json(json.loads(results_path.read_text()))
    except (OSError, ValueError) as e:
        raise UserError(f"--from-results {results_path}: cannot read it ({e}); pass the "
                        "results.json of a replicate report") from None
    except (KeyError, TypeError) as e:
        raise UserError(f"--from-results {results_path}: not a replicate results.json "
                        f"(missing {e})") from None
    return write_report(inputs, out_dir)
