"""What a training run logs: config, datasets, per-epoch metrics, curves, confusion, model.

`train_run(config, data)` wraps the core's `train` in one tracked run (tracking/lifecycle.py);
the per-epoch metrics are a training callback, as the core wants.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.entities import Metric
from mlflow.models import infer_signature

from pipeline.core import plots
from pipeline.core.config import TrainConfig
from pipeline.core.data import CLASSES, FashionMNIST, Split
from pipeline.core.training import TRAIN_TIME, Callback, EpochEnd, TrainResult, predict, train
from pipeline.tracking.lifecycle import log_new_params, tracked_run

PACKAGE_DIR = Path(__file__).resolve().parent


def train_run(config: TrainConfig, data: FashionMNIST, *, log_model: bool = False,
              confusion: bool = True, nested: bool = False, parent_run_id: str | None = None,
              callbacks: tuple[Callback, ...] = (),
              tags: dict[str, str] | None = None, run_name: str | None = None,
              finished_on: tuple[type[BaseException], ...] = (),
              on_start: Callable[[str], None] | None = None) -> tuple[str, TrainResult]:
    """Train `config` inside one MLflow run (the active one under `mlflow run`).

    The run ends as tracking/lifecycle.py says; a pruned run (`finished_on`) still gets its
    curves.
    `on_start` receives the run id as soon as the run exists. `parent_run_id` nests the run
    under a run that is not this process's active one (a replicate worker's table run).
    """
    history: list[dict[str, float]] = []
    title = describe(config)
    with tracked_run(run_name or title, tags=tags, nested=nested, parent_run_id=parent_run_id,
                     finished_on=finished_on) as run:
        run_id = run.info.run_id
        if on_start:
            on_start(run_id)
        log_config(config)
        log_dataset(data)
        try:
            result = train(config, data, callbacks=(lambda end: history.append(end.metrics),
                                                    MetricsLogger(run_id), *callbacks))
        except finished_on:  # pruned: the curves so far, then the normal end
            mlflow.log_figure(plots.curves(history, f"{title} (stopped at epoch "
                                                    f"{len(history)})"), "curves.png")
            raise
        log_results(data, result, title, confusion)
        if log_model:
            save_model(result.model, data.test.images)
        return run_id, result


class MetricsLogger:
    """Training callback: the epoch's metrics to one run in one call, with step=epoch."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.client = mlflow.MlflowClient()

    def __call__(self, end: EpochEnd) -> None:
        ts = int(1000 * time.time())
        metrics = [Metric(k, v, ts, end.epoch) for k, v in end.metrics.items()]
        self.client.log_batch(self.run_id, metrics=metrics, synchronous=True)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def log_config(config: TrainConfig) -> None:
    """The resolved config as params in one call, and as config.json."""
    log_new_params(config.to_dict())
    mlflow.log_dict(config.to_dict(), "config.json")
    commit = git_commit()
    if commit:
        mlflow.set_tags({"git_commit": commit, "mlflow.source.git.commit": commit})


def log_dataset(data: FashionMNIST) -> None:
    """The three splits as MLflow dataset inputs, each with its digest and context."""
    for context, split in (("training", data.train), ("validation", data.val),
                           ("test", data.test)):
        dataset = mlflow.data.from_numpy(split.images.numpy(), targets=split.labels.numpy(),
                                         name=f"fashion-mnist-{context}")
        try:
            mlflow.log_input(dataset, context=context)
        except mlflow.exceptions.MlflowException as e:
            if "IntegrityError" not in str(e) or "datasets" not in str(e):
                raise
            # Workers logging a new dataset at the same moment race on the store's insert;
            # the loser finds the winner's row on a second try and links its run to it.
            mlflow.log_input(dataset, context=context)


def confusion_counts(model: torch.nn.Module, split: Split) -> np.ndarray:
    pred = predict(model, split.images).argmax(1)
    k = len(CLASSES)
    return torch.bincount(split.labels * k + pred, minlength=k * k).reshape(k, k).cpu().numpy()


def log_results(data: FashionMNIST, result: TrainResult, title: str,
                confusion: bool = True) -> None:
    """Total time, curves and (optionally: it takes a second or two) the test confusion matrix."""
    mlflow.log_metric(TRAIN_TIME, result.train_time_s)
    mlflow.log_figure(plots.curves(result.history, title), "curves.png")
    if confusion:
        log_confusion(result.model, data, title)


def log_confusion(model: torch.nn.Module, data: FashionMNIST, title: str) -> None:
    counts = confusion_counts(model, data.test.to(next(model.parameters()).device))
    mlflow.log_figure(plots.confusion(counts, title), "confusion_matrix.png")


def save_model(model: torch.nn.Module, sample: torch.Tensor, **kwargs):
    """Log a model that takes raw float32 pixels (N, 1, 28, 28) in 0..255 and returns 10 logits.

    MLflow's default "pt2" format stores the exported graph (torch.export), not pickled code:
    loading it needs neither this package nor trust in the file.
    """
    model = model.to("cpu").eval()
    example = sample[:5].float().cpu().numpy()
    with torch.inference_mode():
        signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
    # Pinned requirements instead of MLflow's inference, which re-imports the model (slow).
    requirements = [f"{name}=={importlib.metadata.version(name)}"
                    for name in ("torch", "torchvision", "mlflow", "numpy")]
    return mlflow.pytorch.log_model(model, name="model", signature=signature,
                                    input_example=example, pip_requirements=requirements,
                                    **kwargs)


def describe(config: TrainConfig) -> str:
    """A short human title for figures: model, widths, optimizer and lr."""
    arch = f"FCN {'-'.join(map(str, (784, *config.hidden, 10)))}" if config.model == "fcn" \
        else {"study_cnn": "study CNN", "fast_cnn": "fast CNN"}[config.model]
    extras = [f"dropout {config.dropout:g}"] if config.dropout else []
    extras += ["batch norm"] if config.batch_norm else []
    extras += [f"init {config.init}"] if config.init != "default" else []
    extras += [f"{config.schedule} schedule"] if config.schedule != "constant" else []
    extras += [f"label smoothing {config.label_smoothing:g}"] if config.label_smoothing else []
    extras += [f"flips + shifts of {config.max_shift}" if config.max_shift else "flips"] \
        if config.augment else []
    return ", ".join([f"{arch}: {config.optimizer} lr {config.lr:g}", *extras])
