"""A logged model that answers like a classifier: this module is its python_function flavor.

Every model we log (tracking/log.py `save_model`) holds one exported torch program (torch.export,
MLflow's "pt2" format) under two flavors:
- `pytorch`: `mlflow.pytorch.load_model(uri)` returns the module: float32 raw pixels
  (N, 1, 28, 28) in 0..255 -> 10 logits. Training, `evaluate` and `predict` use it.
- `python_function`, served by `mlflow models serve` and `mlflow.pyfunc.load_model(uri)`: this
  module, copied into the model's code/ folder, so the model needs neither our package nor
  pickled code. It answers one row per image: `class_index`, `class_name` and the ten
  `probabilities` (softmax, in class order), as the model's output signature says.

Every request is checked before the network sees it (`checked`): raw pixels, finite and in
0..255, shape (N, 1, 28, 28), 1 to MAX_IMAGES images. Anything else is an MlflowException with
INVALID_PARAMETER_VALUE, which MLflow's scoring server answers with HTTP 400 and the reason as
JSON: a NaN pixel would otherwise come back as class 0 with bare `NaN` tokens (invalid JSON),
and a pixel far outside 0..255 as a 100%-confident class that means nothing.

It imports only what a served model has (mlflow, numpy, pandas, torch): keep it that way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

LOADER_MODULE = Path(__file__).stem  # its name inside a model's code/ folder
CLASSES_KEY = "classes"  # the class names, in the pyfunc flavor's configuration
INPUT_SHAPE = (-1, 1, 28, 28)  # raw FashionMNIST pixels, any number of images
PIXEL_MAX = 255.0  # pixels are 0..PIXEL_MAX, as the models were trained on
# Images per request, at most: the whole test set, and a bound on the memory one request's
# forward takes. MLflow has parsed the body when this is checked: a hard limit on the body's
# bytes belongs to a proxy in front (docs/serving.md).
MAX_IMAGES = 10_000


def save_model(pytorch_model, path, mlflow_model, classes, **kwargs) -> None:
    """`mlflow.models.Model.log(flavor=<this module>, ...)` calls this: MLflow's own pytorch
    flavor, then its python_function flavor pointed at this module."""
    import mlflow.pytorch

    kwargs.pop("validate_serving_input", None)  # Model.log's, not the flavor's
    mlflow.pytorch.save_model(
        pytorch_model, path, mlflow_model=mlflow_model, code_paths=[__file__], **kwargs
    )
    pyfunc = mlflow_model.flavors["python_function"]
    pyfunc.update({"loader_module": LOADER_MODULE, CLASSES_KEY: list(classes)})
    mlflow_model.save(os.path.join(path, "MLmodel"))


def _load_pyfunc(data_path: str, model_config=None) -> Classifier:
    """MLflow's pyfunc entry point; `data_path` is the model's data/ folder."""
    import mlflow.pytorch
    from mlflow.models import Model

    root = Path(data_path).parent
    classes = Model.load(root).flavors["python_function"][CLASSES_KEY]
    return Classifier(mlflow.pytorch.load_model(str(root), map_location="cpu"), classes)


class Classifier:
    """Raw pixels in; per image the predicted class (index and name) and the ten probabilities."""

    def __init__(self, module, classes: list[str]):
        self.module, self.classes = module, classes

    def predict(self, model_input, params=None) -> pd.DataFrame:
        import torch

        with torch.inference_mode():
            probs = self.module(torch.as_tensor(checked(model_input))).float().softmax(1).numpy()
        if not np.isfinite(probs).all():  # a diverged network: a server fault, still valid JSON
            from mlflow.exceptions import MlflowException

            raise MlflowException(
                "the model's answer is not finite: its weights may have "
                "diverged (NaN or infinite); it cannot classify"
            )
        return answer(probs, self.classes)


def checked(model_input) -> np.ndarray:
    """The request's images as float32 (N, 1, 28, 28), every pixel finite and in 0..255;
    otherwise an MlflowException (INVALID_PARAMETER_VALUE: HTTP 400) saying what is wrong."""
    from mlflow.exceptions import MlflowException

    def refuse(why: str):
        return MlflowException.invalid_parameter_value(f"refused: {why}")

    try:
        with np.errstate(over="ignore"):  # 1e39 becomes inf, refused below as not finite
            pixels = np.asarray(model_input, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise refuse(f"pixels must be numbers, nested as (N, 1, 28, 28) ({str(e)[:200]})") from None
    shape = tuple(INPUT_SHAPE[1:])
    if pixels.ndim != len(INPUT_SHAPE) or pixels.shape[1:] != shape:
        raise refuse(
            f"images must have shape (N, {', '.join(map(str, shape))}); got {pixels.shape}"
        )
    if not 1 <= len(pixels) <= MAX_IMAGES:
        raise refuse(
            f"{len(pixels)} images; a request holds 1 to {MAX_IMAGES}"
            + (": split it" if len(pixels) else "")
        )
    bad = ~np.isfinite(pixels) | (pixels < 0) | (pixels > PIXEL_MAX)
    if bad.any():
        image, _, row, column = (int(i) for i in np.argwhere(bad)[0])
        raise refuse(
            f"pixels must be finite numbers in 0..{PIXEL_MAX:g} (raw FashionMNIST "
            f"values); {int(bad.sum())} are not, the first "
            f"{pixels[image, 0, row, column]:g} (image {image}, row {row}, column "
            f"{column})"
        )
    return pixels


def answer(probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """(N, 10) probabilities -> one row per image, as the output signature describes."""
    index = probs.argmax(1)
    return pd.DataFrame(
        {
            "class_index": index.astype(np.int64),
            "class_name": [classes[i] for i in index],
            "probabilities": list(probs.astype(np.float32)),
        }
    )
