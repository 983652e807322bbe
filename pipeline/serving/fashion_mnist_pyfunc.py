"""A logged model that answers like a classifier: this module is its python_function flavor.

Every model we log (tracking/log.py `save_model`) holds one exported torch program (torch.export,
MLflow's "pt2" format) under two flavors:
- `pytorch`: `mlflow.pytorch.load_model(uri)` returns the module: float32 raw pixels
  (N, 1, 28, 28) in 0..255 -> 10 logits. Training, `evaluate` and `predict` use it.
- `python_function`, served by `mlflow models serve` and `mlflow.pyfunc.load_model(uri)`: this
  module, copied into the model's code/ folder, so the model needs neither our package nor
  pickled code. It answers one row per image: `class_index`, `class_name` and the ten
  `probabilities` (softmax, in class order), as the model's output signature says.

It imports only what a served model has (mlflow, numpy, pandas, torch): keep it that way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

LOADER_MODULE = Path(__file__).stem  # its name inside a model's code/ folder
CLASSES_KEY = "classes"              # the class names, in the pyfunc flavor's configuration


def save_model(pytorch_model, path, mlflow_model, classes, **kwargs) -> None:
    """`mlflow.models.Model.log(flavor=<this module>, ...)` calls this: MLflow's own pytorch
    flavor, then its python_function flavor pointed at this module."""
    import mlflow.pytorch

    kwargs.pop("validate_serving_input", None)  # Model.log's, not the flavor's
    mlflow.pytorch.save_model(pytorch_model, path, mlflow_model=mlflow_model,
                              code_paths=[__file__], **kwargs)
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
            probs = self.module(torch.as_tensor(np.asarray(model_input, dtype=np.float32))
                                ).float().softmax(1).numpy()
        return answer(probs, self.classes)


def answer(probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """(N, 10) probabilities -> one row per image, as the output signature describes."""
    index = probs.argmax(1)
    return pd.DataFrame({"class_index": index.astype(np.int64),
                         "class_name": [classes[i] for i in index],
                         "probabilities": list(probs.astype(np.float32))})
