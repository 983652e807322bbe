"""The options of the smaller entry points (prepare, evaluate, predict, dashboard), each defined
once, and which options class belongs to which command.

train's are pipeline/core/recipes.py's TrainOptions, tune's pipeline/tuning/tune_settings.py's
TuneOptions, replicate's pipeline/replication/replicate_settings.py's ReplicateOptions. The CLI
(pipeline/cli/build.py) and MLproject (pipeline/cli/mlproject.py) are generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core import options
from pipeline.core.config import data_dir
from pipeline.core.recipes import TrainOptions
from pipeline.replication.replicate_settings import ReplicateOptions
from pipeline.tracking.registered import DEFAULT_MODEL_URI
from pipeline.tuning.tune_settings import DEFAULT_STORAGE, TuneOptions


@dataclass(frozen=True)
class PrepareOptions:
    data_dir: Path = data_dir()

    def __post_init__(self):
        options.check(self)


@dataclass(frozen=True)
class EvaluateOptions:
    model_uri: str = options.text(
        DEFAULT_MODEL_URI,
        "runs:/<run id>/model, models:/<name>@<alias>, "
        "models:/<name>/<version> or a logged model id m-...",
    )
    data_dir: Path = data_dir()

    def __post_init__(self):
        options.check(self)


@dataclass(frozen=True)
class PredictOptions:
    images: tuple[Path, ...] = options.paths(
        "PNG or JPEG files (any size or colour), or folders of them."
    )
    model_uri: str = options.text(
        DEFAULT_MODEL_URI,
        "A logged PyTorch model: models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model.",
    )
    top: int = options.integer(
        3, "How many classes to print per image.", low=1, high=10
    )  # FashionMNIST's classes

    def __post_init__(self):
        options.check(self)


@dataclass(frozen=True)
class DashboardOptions:
    storage: str = options.text(DEFAULT_STORAGE, "The study storage that tune used.")
    host: str = options.text("127.0.0.1", "Interface to listen on.")
    port: int = options.integer(8080, "Port of the web page.", low=1, high=65_535)

    def __post_init__(self):
        options.check(self)


# MLproject's entry points, in its order; the dashboard is a server, not a project run
ENTRY_POINTS: dict[str, type] = {
    "prepare": PrepareOptions,
    "train": TrainOptions,
    "tune": TuneOptions,
    "evaluate": EvaluateOptions,
    "replicate": ReplicateOptions,
    "predict": PredictOptions,
}
COMMANDS: dict[str, type] = {**ENTRY_POINTS, "dashboard": DashboardOptions}
