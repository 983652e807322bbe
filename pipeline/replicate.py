"""`replicate`: the study's experiments over several seeds, grouped in MLflow, and the report.

One top-level run ("replicate", or the project's run under `mlflow run`) holds the report; one
nested parent run per table holds that table's variants: a variant several tables share is
trained once, under the first table that needs it, and the later tables name its runs in
runs.json. Every training is `tracking.train_run`, the same as `train`, tagged `variant`, `seed`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from pipeline import report, tracking
from pipeline.config import MODELS, ConfigError, TrainConfig, UserError
from pipeline.data import CLASSES, FashionMNIST, Split
from pipeline.evaluate import slug
from pipeline.experiments import TABLES, VARIANTS, variant_keys
from pipeline.stats import per_class
from pipeline.training import pick_device

QUICK_EPOCHS, QUICK_CNN_EPOCHS, QUICK_SEEDS, QUICK_TRAIN_SIZE = 2, 1, 2, 10_000


@dataclass(frozen=True)
class ReplicateSettings:
    seeds: int = 3
    epochs: int = 50       # FCN epochs (the study's)
    cnn_epochs: int = 10   # the study's CNN epochs
    quick: bool = False
    train_size: int | None = None  # None: all 50,000 training images
    out_dir: Path = Path("report")

    @classmethod
    def build(cls, seeds: int = 0, epochs: int = 0, cnn_epochs: int = 0, quick: bool = False,
              out_dir: Path = Path("report")) -> ReplicateSettings:
        """0 means the default: the study's epochs and 3 seeds, or the quick mode's."""
        for name, value in (("seeds", seeds), ("epochs", epochs), ("cnn_epochs", cnn_epochs)):
            if value < 0:
                raise ConfigError(f"{name}: {value} must be >= 1 (or 0 for the default)")
        return cls(seeds=seeds or (QUICK_SEEDS if quick else 3),
                   epochs=epochs or (QUICK_EPOCHS if quick else 50),
                   cnn_epochs=cnn_epochs or (QUICK_CNN_EPOCHS if quick else 10), quick=quick,
                   train_size=QUICK_TRAIN_SIZE if quick else None, out_dir=out_dir)

    def config(self, key: str, seed: int) -> TrainConfig:
        base = VARIANTS[key].config
        epochs = self.cnn_epochs if base.model != "fcn" else self.epochs
        return dataclasses.replace(base, epochs=epochs, seed=seed)


def machine() -> str:
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
    return (f"{os.cpu_count()} cores, {name}, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads on {device.type}")


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


def train_seed(settings: ReplicateSettings, key: str, seed: int, data: FashionMNIST,
               table: int, parent: str) -> report.SeedRun:
    config = settings.config(key, seed)
    variant = VARIANTS[key]
    run_id, result = tracking.train_run(
        config, data, nested=True, confusion=False, run_name=f"{variant.label}, seed {seed}",
        tags={"replicate_run": parent, "variant": key, "seed": str(seed),
              "replicate_table": str(table)})
    counts = tracking.confusion_counts(result.model, data.test)
    recall = per_class(counts)["recall"]
    client = mlflow.MlflowClient()
    now = int(1000 * time.time())
    client.log_batch(run_id, metrics=[Metric(f"test_acc_{slug(c)}", float(r), now, config.epochs)
                                      for c, r in zip(CLASSES, recall)], synchronous=True)
    client.log_dict(run_id, {"classes": list(CLASSES), "counts": counts.tolist()},
                    "test_confusion_counts.json")
    return report.SeedRun(key, seed, run_id, result.history, result.train_time_s, counts)


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
    keys = variant_keys()
    progress = Progress(len(keys) * len(seeds))
    runs: dict[str, list[report.SeedRun]] = {}
    table_runs: dict[int, str] = {}
    resumed = bool(os.environ.get("MLFLOW_RUN_ID"))
    top = mlflow.start_run(run_name=None if resumed else "replicate",
                           tags={"replicate": "true"})
    if resumed:
        mlflow.set_tags({"mlflow.runName": "replicate", "replicate": "true"})
    tracking.log_new_params({"seeds": settings.seeds, "epochs": settings.epochs,
                             "cnn_epochs": settings.cnn_epochs, "quick": settings.quick,
                             "train_size": len(data.train)})
    status = "FAILED"
    try:
        for table in TABLES:
            with_status(lambda: run_table(settings, table, data, seeds, runs, top.info.run_id,
                                          progress, table_runs),
                        run_name=f"table {table.number}: {table.title}",
                        tags={"replicate_table": str(table.number)})
        inputs = report.ReportInput(
            runs=runs, seeds=seeds, epochs=settings.epochs, cnn_epochs=settings.cnn_epochs,
            quick=settings.quick, train_size=len(data.train), machine=machine(),
            wall_s=time.perf_counter() - start, tuned=tuned_champions(), table_run_ids=table_runs)
        path = write_report(inputs, settings.out_dir)
        mlflow.log_artifacts(str(settings.out_dir), "report")
        mlflow.log_metrics({"wall_time_s": inputs.wall_s, **summary_metrics(runs, runs)})
        status = "FINISHED"
        return top.info.run_id, path
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow.end_run(status)


def with_status(body, run_name: str, tags: dict[str, str]) -> None:
    """A nested run around `body` that ends FINISHED, KILLED on Ctrl-C, FAILED otherwise."""
    mlflow.start_run(nested=True, run_name=run_name, tags=tags)
    status = "FAILED"
    try:
        body()
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow.end_run(status)


def run_table(settings: ReplicateSettings, table, data: FashionMNIST, seeds: list[int],
              runs: dict[str, list[report.SeedRun]], top_id: str, progress: Progress,
              table_runs: dict[int, str]) -> None:
    table_runs[table.number] = mlflow.active_run().info.run_id
    for key in table.variants:
        if key in runs:
            continue  # trained under an earlier table
        runs[key] = []
        for seed in seeds:
            run = train_seed(settings, key, seed, data, table.number, top_id)
            runs[key].append(run)
            progress(VARIANTS[key].label, seed, run)
    inputs = report.ReportInput(runs={k: runs[k] for k in table.variants}, seeds=seeds,
                                epochs=settings.epochs, cnn_epochs=settings.cnn_epochs,
                                quick=settings.quick, train_size=len(data.train), machine="")
    mlflow.log_figure(report.table_figure(inputs, table), f"table_{table.number}.png")
    mlflow.log_text("\n".join(report.table_markdown(inputs, table)), "table.md")
    mlflow.log_dict({VARIANTS[k].label: {str(r.seed): r.run_id for r in runs[k]}
                     for k in table.variants}, "runs.json")
    mlflow.log_metrics(summary_metrics(runs, table.variants))


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
