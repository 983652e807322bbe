"""MLflow around the core: where runs go, the per-epoch metrics callback, and what a run logs.

The core never imports this module; entry points wrap `training.train` with it.
Defaults: the tracking store is the embedded SQLite file `mlflow.db` in the working directory
(override with MLFLOW_TRACKING_URI), the experiment is "fashion-mnist" (MLFLOW_EXPERIMENT_NAME).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.entities import Metric
from mlflow.models import infer_signature

from pipeline import plots
from pipeline.config import TrainConfig, UserError
from pipeline.data import CLASSES, FashionMNIST, Split
from pipeline.training import TRAIN_TIME, Callback, EpochEnd, TrainResult, predict, train

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "fashion-mnist"
PACKAGE_DIR = Path(__file__).resolve().parent


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
            mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)
        except mlflow.exceptions.MlflowException as e:  # an unknown scheme, a bad path
            raise UserError(f"MLFLOW_TRACKING_URI {uri}: unusable "
                            f"({str(e).splitlines()[0][:160]})") from None


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


def log_files(paths: list[Path], artifact_path: str) -> None:
    with mlflow.start_run():
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path)


def train_run(config: TrainConfig, data: FashionMNIST, *, log_model: bool = False,
              confusion: bool = True, nested: bool = False, parent_run_id: str | None = None,
              callbacks: tuple[Callback, ...] = (),
              tags: dict[str, str] | None = None, run_name: str | None = None,
              finished_on: tuple[type[BaseException], ...] = (),
              on_start: Callable[[str], None] | None = None) -> tuple[str, TrainResult]:
    """Train `config` inside one MLflow run (the active one under `mlflow run`).

    The run ends FINISHED; KILLED on Ctrl-C; FAILED on any other exception, except those in
    `finished_on` (a pruned trial is a normal end). A stopped run still gets its curves.
    `on_start` receives the run id as soon as the run exists. `parent_run_id` nests the run
    under a run that is not this process's active one (a replicate worker's table run).
    """
    resumed = bool(os.environ.get("MLFLOW_RUN_ID")) and not nested  # `mlflow run` made it
    run_name = run_name or describe(config)
    run = mlflow.start_run(nested=nested, parent_run_id=parent_run_id,
                           run_name=None if resumed else run_name, tags=tags)
    run_id = run.info.run_id
    if resumed:
        mlflow.set_tag("mlflow.runName", run_name)  # a readable name instead of a random one
    history: list[dict[str, float]] = []
    status = "FAILED"
    try:
        if on_start:
            on_start(run_id)
        log_config(config)
        log_dataset(data)
        result = train(config, data, callbacks=(lambda end: history.append(end.metrics),
                                                MetricsLogger(run_id), *callbacks))
        log_results(data, result, describe(config), confusion)
        if log_model:
            save_model(result.model, data.test.images)
        status = "FINISHED"
        return run_id, result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except finished_on:
        status = "FINISHED"
        raise
    finally:
        if history and status != "KILLED" and len(history) < config.epochs:
            mlflow.log_figure(plots.curves(history, f"{describe(config)} (stopped at epoch "
                                                    f"{len(history)})"), "curves.png")
        mlflow.end_run(status)


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


def log_new_params(params: dict) -> None:
    """Log params in one call, skipping those the active run has already.

    `mlflow run` logs the entry point's parameters as the user spelled them ("1e-3"), and MLflow
    refuses to change a param, so ours ("0.001") may only add what it has not logged.
    """
    logged = mlflow.MlflowClient().get_run(mlflow.active_run().info.run_id).data.params
    mlflow.log_params({k: v for k, v in params.items() if k not in logged})


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
