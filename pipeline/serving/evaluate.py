"""`evaluate`: one logged model on the untouched test set, in its own MLflow run linked to it.

The model is any of ours that MLflow can find: `runs:/<run id>/model`, `models:/<name>@<alias>`,
`models:/<name>/<version>`, or a logged model id (`m-...`). It is checked (PyTorch flavor, input
float32 (N, 1, 28, 28), 10 outputs) and loaded before any run exists, so a bad URI writes nothing.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
import torch.nn.functional as F
from mlflow.data.numpy_dataset import from_numpy
from mlflow.entities import LoggedModelInput
from mlflow.exceptions import MlflowException

from pipeline.core import plots, stats
from pipeline.core.credentials import without_password
from pipeline.core.data import CLASSES, FashionMNIST, Split
from pipeline.core.errors import UserError, first_line
from pipeline.core.metrics import TEST_ACC, TEST_LOSS
from pipeline.core.training import EVAL_BATCH
from pipeline.tracking import log as tracklog
from pipeline.tracking.fashion_mnist_pyfunc import INPUT_SHAPE
from pipeline.tracking.lifecycle import tracked_run
from pipeline.tracking.registered import DEFAULT_MODEL_URI

N_SHOWN = 40  # misclassified images in the grid


class ModelURIError(UserError):
    """The model URI names nothing, or something that is not a FashionMNIST model of ours."""


@dataclass
class Evaluation:
    """Test-set figures of one model."""

    accuracy: float
    loss: float
    counts: np.ndarray  # confusion matrix, rows true, columns predicted
    per_class: dict[str, np.ndarray]
    probabilities: np.ndarray  # (N, 10) softmax outputs
    labels: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(1)

    def metrics(self) -> dict[str, float]:
        """Flat metric names for MLflow: test_acc, test_loss, test_{precision,recall,f1}_<class>,
        and the macro averages."""
        out = {TEST_ACC: self.accuracy, TEST_LOSS: self.loss}
        for name, values in self.per_class.items():
            if name == "support":
                continue
            out[f"test_macro_{name}"] = float(values.mean())
            out.update({f"test_{name}_{slug(c)}": float(v) for c, v in zip(CLASSES, values)})
        return out

    def table_rows(self) -> list[dict[str, object]]:
        return [
            {
                "class": c,
                **{
                    k: (int(v[i]) if k == "support" else round(float(v[i]), 4))
                    for k, v in self.per_class.items()
                },
            }
            for i, c in enumerate(CLASSES)
        ]


def slug(name: str) -> str:
    """'T-shirt/top' -> 't_shirt_top': a metric-name-safe class name."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def normalize_uri(uri: str) -> str:
    uri = uri.strip()
    if re.fullmatch(r"m-[0-9a-f]{32}", uri):  # a bare logged model id
        return f"models:/{uri}"
    return uri


def resolve(uri: str) -> mlflow.models.model.ModelInfo:
    """The model's metadata, or one line that says what is wrong with the URI."""
    uri = normalize_uri(uri)
    if not re.match(r"^(runs|models):/", uri):
        raise ModelURIError(
            f"model URI {uri!r} is not runs:/<run id>/model, "
            "models:/<name>@<alias>, models:/<name>/<version> or a model id m-..."
        )
    store = sqlite_file(mlflow.get_tracking_uri())
    if store is not None and not store.exists():  # do not create an empty store to say so
        raise ModelURIError(
            f"model {uri!r} not found: there is no tracking store at {store}; "
            "set MLFLOW_TRACKING_URI to the store that train or tune used"
        )
    try:
        info = mlflow.models.get_model_info(uri)
    except MlflowException as e:
        hint = (
            "run `python -m pipeline tune` first to register a champion, or pass --model-uri"
            if uri == DEFAULT_MODEL_URI
            else "check the name, alias, version or run id (mlflow ui lists them) and "
            "MLFLOW_TRACKING_URI"
        )
        raise ModelURIError(
            f"model {uri!r} not found in "
            f"{without_password(mlflow.get_tracking_uri())}: "
            f"{first_line(e.message)}; {hint}"
        ) from None
    except OSError as e:  # a runs:/ URI whose artifacts are gone
        raise ModelURIError(f"model {uri!r} cannot be read: {e}") from None
    check_ours(uri, info)
    return info


def sqlite_file(tracking_uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def check_ours(uri: str, info: mlflow.models.model.ModelInfo) -> None:
    """A PyTorch model taking float32 (N, 1, 28, 28) whose outputs are 10 logits (models logged
    before the classifier answer) or class_index / class_name / probabilities (tracking/log.py);
    either way its pytorch flavor returns the logits."""
    why = None
    if "pytorch" not in info.flavors:
        why = f"it is a {'/'.join(f for f in info.flavors if f != 'python_function')} model"
    elif info.signature is None or info.signature.inputs is None:
        why = "it has no signature"
    else:
        spec = info.signature.inputs.to_dict()
        outputs = info.signature.outputs.to_dict() if info.signature.outputs else []
        shape_ok = (
            len(spec) == 1
            and spec[0].get("type") == "tensor"
            and tuple(spec[0]["tensor-spec"]["shape"]) == INPUT_SHAPE
            and spec[0]["tensor-spec"]["dtype"] == "float32"
        )
        logits = len(outputs) == 1 and outputs[0].get("tensor-spec", {}).get("shape", [0])[-1] == 10
        answer = {o.get("name") for o in outputs} == {"class_index", "class_name", "probabilities"}
        if not (shape_ok and (logits or answer)):
            why = f"its signature is {info.signature.inputs} -> {info.signature.outputs}"
    if why:
        raise ModelURIError(
            f"model {uri!r} is not a FashionMNIST classifier of this project "
            f"({why}; expected float32 (N, 1, 28, 28) -> 10 classes)"
        )


def load(uri: str) -> torch.nn.Module:
    try:
        return mlflow.pytorch.load_model(normalize_uri(uri), map_location="cpu")
    except (MlflowException, OSError, RuntimeError) as e:
        raise ModelURIError(f"model {uri!r} could not be loaded: {first_line(e)}") from None


@torch.inference_mode()
def evaluate(model: torch.nn.Module, split: Split, batch_size: int = EVAL_BATCH) -> Evaluation:
    """Loss, accuracy, confusion matrix and per-class scores of `model` on `split`.

    `model` takes float32 raw pixels and returns logits; an exported (pt2) model is already in
    eval mode and refuses `.eval()`, so neither is asked of it.
    """
    logits = torch.cat(
        [model(split.images[i : i + batch_size].float()) for i in range(0, len(split), batch_size)]
    ).float()
    labels = split.labels.to(logits.device)
    loss = F.cross_entropy(logits, labels).item()
    true, predicted = labels.cpu().numpy(), logits.argmax(1).cpu().numpy()
    k = len(CLASSES)
    counts = stats.confusion_counts(true, predicted, k)
    return Evaluation(
        accuracy=float(np.trace(counts) / counts.sum()),
        loss=loss,
        counts=counts,
        per_class=stats.class_scores(true, predicted, k),
        probabilities=logits.softmax(1).cpu().numpy(),
        labels=true,
    )


def misclassified_figure(result: Evaluation, split: Split, title: str, n: int = N_SHOWN):
    """The `n` most confidently wrong test images."""
    wrong = np.flatnonzero(result.predictions != result.labels)
    confidence = result.probabilities.max(1)
    shown = wrong[np.argsort(-confidence[wrong])][:n]
    return plots.misclassified(
        split.images[shown].numpy(),
        result.labels[shown],
        result.predictions[shown],
        confidence[shown],
        f"{title}: the {len(shown)} most confident of {len(wrong)} errors "
        f"on {len(result.labels)} test images",
    )


def per_class_csv(result: Evaluation) -> str:
    buffer = io.StringIO()
    rows = result.table_rows()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def table(result: Evaluation) -> str:
    """The terminal summary: overall figures, then one line per class."""
    lines = [
        f"test accuracy {100 * result.accuracy:.2f}%, loss {result.loss:.4f} "
        f"({len(result.labels)} images)",
        f"{'class':<12} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}",
    ]
    for row in result.table_rows():
        lines.append(
            f"{row['class']:<12} {row['precision']:>9.3f} {row['recall']:>7.3f} "
            f"{row['f1']:>6.3f} {row['support']:>8d}"
        )
    macro = {k: float(v.mean()) for k, v in result.per_class.items() if k != "support"}
    lines.append(
        f"{'macro':<12} {macro['precision']:>9.3f} {macro['recall']:>7.3f} {macro['f1']:>6.3f}"
    )
    return "\n".join(lines)


def evaluate_run(
    uri: str, info: mlflow.models.model.ModelInfo, model: torch.nn.Module, data: FashionMNIST
) -> tuple[str, Evaluation]:
    """Evaluate a resolved and loaded model, then log everything in one MLflow run (the active
    one under `mlflow run`), linked to the logged model: its metrics appear on its page."""
    uri = normalize_uri(uri)
    result = evaluate(model, data.test)
    title = uri
    tags = {
        "evaluated_model_uri": uri,
        "evaluated_model_id": info.model_id or "",
        "evaluated_run_id": info.run_id or "",
    }
    with tracked_run(f"evaluate {uri}", tags=tags) as run:
        test = from_numpy(
            data.test.images.numpy(),
            targets=data.test.labels.numpy(),
            name=tracklog.dataset_name("test"),
        )
        model_input = LoggedModelInput(info.model_id) if info.model_id else None
        mlflow.log_input(test, context="evaluation", model=model_input)
        mlflow.log_metrics(result.metrics(), model_id=info.model_id or None, dataset=test)
        mlflow.log_figure(plots.confusion(result.counts, title), tracklog.CONFUSION_FIGURE)
        mlflow.log_figure(misclassified_figure(result, data.test, title), "misclassified.png")
        mlflow.log_dict(
            {
                "model_uri": uri,
                "model_id": info.model_id,
                "run_id": info.run_id,
                "accuracy": result.accuracy,
                "loss": result.loss,
                "per_class": result.table_rows(),
                "confusion_matrix": result.counts.tolist(),
                "classes": list(CLASSES),
            },
            "evaluation.json",
        )
        mlflow.log_text(per_class_csv(result), "per_class.csv")
        return run.info.run_id, result
