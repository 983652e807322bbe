"""The command line: one command per MLproject entry point (`python -m pipeline --help`).

Heavy libraries (torch, mlflow, optuna) are imported inside the commands, so `--help` and
argument errors answer at once. Every user error ends as one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pipeline.config import INITS, MODELS, OPTIMIZERS, SCHEDULES, TrainConfig, UserError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train, tune and compare PyTorch networks on FashionMNIST, "
                       "tracked in MLflow.")

Model = StrEnum("Model", {m: m for m in MODELS})
Optimizer = StrEnum("Optimizer", {o: o for o in OPTIMIZERS})
Init = StrEnum("Init", {i: i for i in INITS})
Schedule = StrEnum("Schedule", {s: s for s in SCHEDULES})

DataDir = Annotated[Path, typer.Option(help="Folder of the IDX files and the tensor cache.")]


@app.command()
def prepare(data_dir: DataDir = Path("data")) -> None:
    """Find, verify (SHA-256) and cache FashionMNIST; write sample grids to DATA_DIR/samples/."""
    from pipeline import data, plots

    dataset = data.load(data_dir)
    paths = plots.save_sample_grids(dataset.train.images, dataset.train.labels,
                                    data_dir / "samples")
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run -e prepare`: show them in the run
        from pipeline import tracking

        tracking.log_files(paths, "samples")
    print(f"FashionMNIST verified and cached in {data_dir / data.CACHE_NAME}; "
          f"sample grids: {', '.join(str(p) for p in paths)}")


@app.command()
def train(
    model: Annotated[Model, typer.Option(help="fcn, or the study's CNN.")] = Model.fcn,
    hidden: Annotated[str, typer.Option(help="FCN hidden sizes, comma-separated.")] = "300,200",
    optimizer: Annotated[Optimizer, typer.Option(help="momentum is SGD with Nesterov 0.9.")]
    = Optimizer.sgd,
    lr: Annotated[float, typer.Option(help="Learning rate (> 0).")] = 0.02,
    epochs: Annotated[int, typer.Option(help="Passes over the 50k training images.")] = 50,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 512,
    dropout: Annotated[float, typer.Option(help="Dropout probability in [0, 1).")] = 0.0,
    init: Annotated[Init, typer.Option(help="Weight initialization scheme.")] = Init.default,
    batch_norm: Annotated[str, typer.Option(metavar="true|false",
                                            help="Batch norm after each hidden layer.")] = "false",
    weight_decay: Annotated[float, typer.Option(help="L2 penalty (>= 0).")] = 0.0,
    schedule: Annotated[Schedule, typer.Option(
        help="Learning rate over time: constant, or 1-epoch warm-up then cosine decay.")]
    = Schedule.constant,
    seed: Annotated[int, typer.Option(help="Seeds weights, dropout and batch order.")] = 0,
    data_dir: DataDir = Path("data"),
) -> None:
    """Train one model as one MLflow run: per-epoch metrics, curves, confusion matrix, model."""
    config = TrainConfig(model=model.value, hidden=hidden, optimizer=optimizer.value, lr=lr,
                         epochs=epochs, batch_size=batch_size, dropout=dropout, init=init.value,
                         batch_norm=batch_norm, weight_decay=weight_decay,
                         schedule=schedule.value, seed=seed)
    from pipeline import data, tracking

    dataset = data.load(data_dir)  # before any run exists: a data error writes nothing
    tracking.configure()
    run_id, result = tracking.train_run(config, dataset, log_model=True)
    final = result.final
    print(f"run {run_id}: val_acc {final['val_acc']:.4f}, test_acc {final['test_acc']:.4f}, "
          f"{result.train_time_s:.1f} s. Look at it: mlflow ui --backend-store-uri "
          f"{tracking.tracking_uri()}")


SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
DEFAULT_SPACE = {"fcn": "fcn.yaml", "study_cnn": "cnn.yaml"}
DEFAULT_STORAGE = "sqlite:///optuna.db"
Pruner = StrEnum("Pruner", {p: p for p in ("median", "hyperband", "none")})


@app.command()
def tune(
    model: Annotated[Model, typer.Option(help="The network every trial trains.")] = Model.fcn,
    space: Annotated[str, typer.Option(
        help="Search-space YAML; empty: search_spaces/fcn.yaml or cnn.yaml by model.")] = "",
    n_trials: Annotated[int, typer.Option(help="Trials to add in this call (0: no limit).")] = 30,
    timeout: Annotated[float, typer.Option(
        help="Seconds after which no new trial starts (0: no limit).")] = 540,
    epochs: Annotated[int, typer.Option(help="Epochs per trial (pruning may stop earlier).")]
    = 20,
    study_name: Annotated[str, typer.Option(
        help="Optuna study; empty: the model name. The same name resumes the study.")] = "",
    storage: Annotated[str, typer.Option(
        help="Optuna storage: an RDB URL (sqlite:///, postgresql://, mysql://) or a journal "
             "file path.")] = DEFAULT_STORAGE,
    seed: Annotated[int, typer.Option(help="Seeds the sampler and every trial's training.")] = 0,
    pruner: Annotated[Pruner, typer.Option(help="Stops poor trials early on val_acc.")]
    = Pruner.median,
    data_dir: DataDir = Path("data"),
) -> None:
    """Run (or resume) an Optuna study; each trial is a nested MLflow run; register the best."""
    from pipeline.config import ConfigError
    from pipeline.search_space import load_space

    for name, value, low in (("n_trials", n_trials, 0), ("timeout", timeout, 0),
                             ("epochs", epochs, 1), ("seed", seed, 0)):
        if value < low:
            raise ConfigError(f"{name}: {value} must be >= {low}")
    if n_trials == 0 and timeout == 0:
        raise ConfigError("n_trials and timeout are both 0: the study would never end; "
                          "set one of them")
    search_space = load_space(Path(space) if space else SPACES / DEFAULT_SPACE[model.value])
    from pipeline import data, tracking, tuning

    settings = tuning.TuneSettings(
        model=model.value, space=search_space, study_name=study_name or model.value,
        storage=storage, n_trials=n_trials or None, timeout=timeout or None, epochs=epochs,
        seed=seed, pruner=pruner.value)
    dataset = data.load(data_dir)
    study = tuning.open_study(settings)  # storage errors surface before any MLflow write
    tracking.configure()
    try:
        study = tuning.tune(settings, dataset, study)
    except KeyboardInterrupt:
        raise UserError("interrupted: the running trial ends FAIL and its MLflow run KILLED; "
                        "run the same command again to resume the study") from None
    print(tuning.summary(study))
    print(f"Look at it: mlflow ui --backend-store-uri {tracking.tracking_uri()}  and  "
          f"python -m pipeline dashboard --storage {tuning.mask_password(storage)}")


@app.command()
def dashboard(
    storage: Annotated[str, typer.Option(help="The study storage that tune used.")]
    = DEFAULT_STORAGE,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the web page.")] = 8080,
) -> None:
    """Start optuna-dashboard on a study storage (open http://HOST:PORT; Ctrl-C stops it)."""
    from optuna_dashboard import run_server

    from pipeline.tuning import make_storage

    print(f"optuna-dashboard on http://{host}:{port} for {storage} (Ctrl-C stops it)")
    run_server(make_storage(storage), host=host, port=port)


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(
        help="PNG or JPEG files (any size or colour), or folders of them.", show_default=False)],
    model_uri: Annotated[str, typer.Option(
        help="A logged PyTorch model: models:/NAME@ALIAS, models:/NAME/VERSION or "
             "runs:/RUN_ID/model.")] = "models:/fashion-mnist-fcn@champion",
    top: Annotated[int, typer.Option(help="How many classes to print per image.")] = 3,
) -> None:
    """Classify images: each becomes 28x28 grayscale (inverted if dark-on-light); prints the
    most likely classes with their probabilities."""
    from pipeline.config import ConfigError

    if not 1 <= top <= 10:
        raise ConfigError(f"top: {top} must be in 1..10")
    from pipeline import predict as predicting

    files, pixels = predicting.load_images(images)
    model = predicting.load_model(model_uri)
    for path, probs in zip(files, predicting.probabilities(model, pixels)):
        print(f"{path}: {predicting.describe(probs, top)}")


def main() -> None:
    """Entry point: typer in non-standalone mode, so every error becomes one line."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as e:  # usage errors: bad option, bad type, bad choice
        print(f"error: {e.format_message()} (see --help)", file=sys.stderr)
        sys.exit(2)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
