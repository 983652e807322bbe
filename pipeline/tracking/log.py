"""What a training run logs: config, datasets, per-epoch metrics, curves, confusion, model.

`train_run(config, data)` wraps the core's `train` in one tracked run (tracking/lifecycle.py);
the per-epoch metrics are a training callback, as the core wants. With `log_model`, the trained
network becomes an MLflow logged model (`save_model`): the experiment's Models view lists it
with its final metrics, each linked to the dataset it was measured on.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.data.numpy_dataset import from_numpy
from mlflow.entities import Metric
from mlflow.models import Model, ModelSignature
from mlflow.types.schema import Array, ColSpec, DataType, Schema, TensorSpec

from pipeline.core import plots, stats
from pipeline.core.config import TrainConfig
from pipeline.core.data import CLASSES, FashionMNIST, Split
from pipeline.core.metrics import TRAIN_TIME
from pipeline.core.training import Callback, EpochEnd, TrainResult, predict, train
from pipeline.core.words import describe
from pipeline.tracking import fashion_mnist_pyfunc
from pipeline.tracking.lifecycle import log_new_params, tracked_run

PACKAGE_DIR = Path(__file__).resolve().parent
CURVES_FIGURE, CONFUSION_FIGURE = "curves.png", "confusion_matrix.png"  # run artifacts
CONTEXTS = ("training", "validation", "test")
# Which split each metric is measured on: its name's prefix (train_loss, val_acc, test_acc).
PREFIX_CONTEXT = {"train_": "training", "val_": "validation", "test_": "test"}
# Raw pixels in; the served (pyfunc) answer out. The pytorch flavor of the same model returns
# the 10 logits (pipeline/tracking/fashion_mnist_pyfunc.py).
MODEL_SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.float32), fashion_mnist_pyfunc.INPUT_SHAPE)]),
    outputs=Schema(
        [
            ColSpec(DataType.long, "class_index"),
            ColSpec(DataType.string, "class_name"),
            ColSpec(Array(DataType.float), "probabilities"),
        ]
    ),
)


def train_run(
    config: TrainConfig,
    data: FashionMNIST,
    *,
    log_model: bool = False,
    confusion: bool = True,
    nested: bool = False,
    parent_run_id: str | None = None,
    callbacks: Sequence[Callback] = (),
    tags: dict[str, str] | None = None,
    run_name: str | None = None,
    finished_on: tuple[type[BaseException], ...] = (),
    on_start: Callable[[str], None] | None = None,
    model_tags: dict[str, str] | None = None,
) -> TrainedRun:
    """Train `config` inside one MLflow run (the active one under `mlflow run`), with MLflow's
    system metrics (CPU, memory, GPU) beside ours.

    The run ends as tracking/lifecycle.py says; a pruned run (`finished_on`) still gets its
    curves.
    `on_start` receives the run id as soon as the run exists. `parent_run_id` nests the run
    under a run that is not this process's active one (a replicate worker's table run).
    `log_model`: the trained network as a logged model (tagged `model_tags`), its final
    metrics linked to it and to their datasets.
    """
    history: list[dict[str, float]] = []
    title = describe(config)
    # the same splits as train() below (idempotent there), so the datasets logged are the
    # ones trained and reported on
    data = data.training_splits(config.holdout)
    with tracked_run(
        run_name or title,
        tags=tags,
        nested=nested,
        parent_run_id=parent_run_id,
        finished_on=finished_on,
        system_metrics=True,
    ) as run:
        run_id = run.info.run_id
        if on_start:
            on_start(run_id)
        log_config(config)
        metrics = MetricsLogger(run_id, log_dataset(data))
        try:
            result = train(
                config,
                data,
                callbacks=(lambda end: history.append(end.metrics), metrics, *callbacks),
            )
        except finished_on:  # pruned: the curves so far, then the normal end
            mlflow.log_figure(
                plots.curves(history, f"{title} (stopped at epoch {len(history)})"),
                CURVES_FIGURE,
            )
            raise
        model_id = None
        if log_model:
            # The model's step counts optimizer steps: MLflow copies the run's metrics of that
            # step onto the model, and at an epoch's number (or a system-metrics sample's) they
            # would come again without their datasets (MetricsLogger.link_final links those).
            steps = len(result.history) * max(1, len(data.train) // config.batch_size)
            model_id = save_model(
                result.model, data.test.images, tags=model_tags, step=steps
            ).model_id
            metrics.link_final(model_id)
        log_results(data, result, title, confusion, model_id)
        return TrainedRun(run_id, result, model_id)


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run: its MLflow run, the core's result, its logged model (or None)."""

    run_id: str
    result: TrainResult
    model_id: str | None = None


class MetricsLogger:
    """Training callback: the epoch's metrics to one run in one call, with step=epoch.

    `link_final(model_id)` logs the last epoch's metrics once more, now also on the logged
    model and each with the dataset it was measured on (a run's own metrics cannot carry one);
    same key, step, timestamp and value, so the run's history does not change."""

    def __init__(self, run_id: str, datasets: dict[str, mlflow.data.Dataset] | None = None):
        self.run_id, self.datasets = run_id, datasets or {}
        self.client = mlflow.MlflowClient()
        self.last: list[Metric] = []

    def __call__(self, end: EpochEnd) -> None:
        ts = int(1000 * time.time())
        self.last = [Metric(k, v, ts, end.epoch) for k, v in end.metrics.items()]
        self.client.log_batch(self.run_id, metrics=self.last, synchronous=True)

    def link_final(self, model_id: str) -> None:
        linked = []
        for m in self.last:
            dataset = next(
                (
                    self.datasets.get(context)
                    for prefix, context in PREFIX_CONTEXT.items()
                    if m.key.startswith(prefix)
                ),
                None,
            )
            if dataset is not None:  # epoch_time_s belongs to no split
                linked.append(
                    Metric(
                        m.key,
                        m.value,
                        m.timestamp,
                        m.step,
                        model_id=model_id,
                        dataset_name=dataset.name,
                        dataset_digest=dataset.digest,
                    )
                )
        self.client.log_batch(self.run_id, metrics=linked, synchronous=True)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=5
        )
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


def dataset_name(context: str) -> str:
    """The MLflow dataset name of a split: fashion-mnist-training, -validation or -test."""
    return f"fashion-mnist-{context}"


def log_dataset(data: FashionMNIST) -> dict[str, mlflow.data.Dataset]:
    """The splits as MLflow dataset inputs, each with its digest and context; returned by
    context (training, validation, test; no validation when none is held out)."""
    logged: dict[str, mlflow.data.Dataset] = {}
    for context, split in zip(CONTEXTS, (data.train, data.val, data.test)):
        if not len(split):
            continue
        dataset = logged[context] = from_numpy(
            split.images.numpy(), targets=split.labels.numpy(), name=dataset_name(context)
        )
        try:
            mlflow.log_input(dataset, context=context)
        except mlflow.exceptions.MlflowException as e:
            if "IntegrityError" not in str(e) or "datasets" not in str(e):
                raise
            # Workers logging a new dataset at the same moment race on the store's insert;
            # the loser finds the winner's row on a second try and links its run to it.
            mlflow.log_input(dataset, context=context)
    return logged


def model_confusion(model: torch.nn.Module, split: Split) -> np.ndarray:
    """`model`'s confusion matrix on `split` (rows true classes)."""
    predicted = predict(model, split.images).argmax(1).cpu().numpy()
    return stats.confusion_counts(split.labels.cpu().numpy(), predicted, len(CLASSES))


def log_results(
    data: FashionMNIST,
    result: TrainResult,
    title: str,
    confusion: bool = True,
    model_id: str | None = None,
) -> None:
    """Total time (on the logged model too), curves and (optionally: it takes a second or two)
    the test confusion matrix."""
    mlflow.log_metric(TRAIN_TIME, result.train_time_s, model_id=model_id)
    mlflow.log_figure(plots.curves(result.history, title), CURVES_FIGURE)
    if confusion:
        log_confusion(result.model, data, title)


def log_confusion(model: torch.nn.Module, data: FashionMNIST, title: str) -> None:
    counts = model_confusion(model, data.test.to(next(model.parameters()).device))
    mlflow.log_figure(plots.confusion(counts, title), CONFUSION_FIGURE)


def save_model(
    model: torch.nn.Module,
    sample: torch.Tensor,
    *,
    tags: dict[str, str] | None = None,
    step: int = 0,
) -> mlflow.models.model.ModelInfo:
    """Log `model` (raw float32 pixels (N, 1, 28, 28) in 0..255 -> 10 logits) as a logged
    model of the active run: `mlflow.pytorch.load_model(uri)` returns the module, while
    `mlflow models serve` and `mlflow.pyfunc.load_model(uri)` answer class index, name and
    probabilities (pipeline/tracking/fashion_mnist_pyfunc.py).

    MLflow's "pt2" format stores the exported graph (torch.export), not pickled code: loading it
    needs neither this package nor trust in the file.
    """
    model = model.to("cpu").eval()
    example = sample[:2].float().cpu().numpy()  # two: a batch of one would export a fixed batch
    # Pinned requirements instead of MLflow's inference, which re-imports the model (slow).
    requirements = [
        f"{name}=={importlib.metadata.version(name)}"
        for name in ("torch", "torchvision", "mlflow", "numpy", "pandas")
    ]
    return Model.log(
        None,
        name="model",
        flavor=fashion_mnist_pyfunc,
        flavor_name="pytorch",
        pytorch_model=model,
        classes=list(CLASSES),
        serialization_format="pt2",
        signature=MODEL_SIGNATURE,
        input_example=example,
        pip_requirements=requirements,
        tags=tags,
        step=step,
        # it would load the model once more; tests serve it for real
        validate_serving_input=False,
    )
