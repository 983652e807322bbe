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

from pipeline.core.config import INITS, MODELS, OPTIMIZERS, SCHEDULES, TrainConfig, UserError
from pipeline.replication.experiments import CNN, FAST_CNN

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
    from pipeline.core import data
    from pipeline.core import plots

    dataset = data.load(data_dir)
    paths = plots.save_sample_grids(dataset.train.images, dataset.train.labels,
                                    data_dir / "samples")
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run -e prepare`: show them in the run
        from pipeline.tracking import store

        store.log_files(paths, "samples")
    print(f"FashionMNIST verified and cached in {data_dir / data.CACHE_NAME}; "
          f"sample grids: {', '.join(str(p) for p in paths)}")


@app.command()
def train(
    model: Annotated[Model, typer.Option(
        help="fcn, the study's CNN, or our fast CNN (3 conv blocks, flip-averaged at test).")]
    = Model.fcn,
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
        help="Learning rate over time: constant; 1-epoch warm-up then cosine decay; or one "
             "cycle (linear rise over 20% of the steps, then linear fall to 0).")]
    = Schedule.constant,
    label_smoothing: Annotated[float, typer.Option(
        help="Label smoothing of the training loss, in [0, 1).")] = 0.0,
    augment: Annotated[str, typer.Option(
        metavar="true|false", help="Random flips and shifts of up to --max-shift pixels.")]
    = "false",
    max_shift: Annotated[int, typer.Option(
        help="With --augment true: largest random shift in pixels (0: flips only).")] = 2,
    seed: Annotated[int, typer.Option(help="Seeds weights, dropout and batch order.")] = 0,
    data_dir: DataDir = Path("data"),
) -> None:
    """Train one model as one MLflow run: per-epoch metrics, curves, confusion matrix, model."""
    config = TrainConfig(model=model.value, hidden=hidden, optimizer=optimizer.value, lr=lr,
                         epochs=epochs, batch_size=batch_size, dropout=dropout, init=init.value,
                         batch_norm=batch_norm, weight_decay=weight_decay,
                         schedule=schedule.value, label_smoothing=label_smoothing,
                         augment=augment, max_shift=max_shift, seed=seed)
    from pipeline.core import data
    from pipeline.tracking import store
    from pipeline.tracking import log as tracklog

    dataset = data.load(data_dir)  # before any run exists: a data error writes nothing
    store.configure()
    run_id, result = tracklog.train_run(config, dataset, log_model=True)
    final = result.final
    print(f"run {run_id}: val_acc {final['val_acc']:.4f}, test_acc {final['test_acc']:.4f}, "
          f"{result.train_time_s:.1f} s. Look at it: mlflow ui --backend-store-uri "
          f"{store.tracking_uri()}")


SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
DEFAULT_SPACE = {"fcn": "fcn.yaml", "fast_cnn": "cnn.yaml", "study_cnn": "study_cnn.yaml"}
# Trial length by model: 20 FCN epochs; the CNNs' own recipes (pipeline/experiments.py).
DEFAULT_EPOCHS = {"fcn": 20, "fast_cnn": FAST_CNN.epochs, "study_cnn": CNN.epochs}
DEFAULT_STORAGE = "sqlite:///optuna.db"
Pruner = StrEnum("Pruner", {p: p for p in ("median", "hyperband", "none")})


@app.command()
def tune(
    model: Annotated[Model, typer.Option(help="The network every trial trains.")] = Model.fcn,
    space: Annotated[str, typer.Option(
        help="Search-space YAML; empty: search_spaces/fcn.yaml, cnn.yaml (fast_cnn) or "
             "study_cnn.yaml by model.")] = "",
    n_trials: Annotated[int, typer.Option(help="Trials to add in this call (0: no limit).")] = 30,
    timeout: Annotated[float, typer.Option(
        help="Seconds after which no new trial starts (0: no limit).")] = 540,
    epochs: Annotated[int, typer.Option(
        help="Epochs per trial (pruning may stop earlier); 0: 20 for fcn, 6 for fast_cnn (its "
             "recipe's length), 10 for study_cnn (the study's).")] = 0,
    study_name: Annotated[str, typer.Option(
        help="Optuna study; empty: the model name. The same name resumes the study.")] = "",
    storage_url: Annotated[str, typer.Option(
        "--storage", help="Optuna storage: an RDB URL (sqlite:///, postgresql://, "
                          "mysql+pymysql://) or a journal file path.")] = DEFAULT_STORAGE,
    seed: Annotated[int, typer.Option(help="Seeds the sampler and every trial's training.")] = 0,
    pruner: Annotated[Pruner, typer.Option(help="Stops poor trials early on val_acc.")]
    = Pruner.median,
    total_trials: Annotated[int, typer.Option(
        help="Study-wide cap shared by all workers: no worker starts a trial once the study "
             "holds this many (retries of dead workers' trials still run). 0: no cap. RDB "
             "storages only.")] = 0,
    heartbeat: Annotated[int, typer.Option(
        help="Seconds between a running trial's heartbeats in an RDB storage (0: off).")] = 60,
    grace_period: Annotated[int, typer.Option(
        help="Seconds without a heartbeat after which a trial's worker counts as dead: the "
             "trial fails, its MLflow runs end KILLED, and it is retried once.")] = 180,
    workers: Annotated[int, typer.Option(
        help="Worker processes of this call, on one study, sharing the threads and n_trials "
             "(python -m bench measured 2 no faster than 1 for the FCN study on 2 cores).")]
    = 1,
    helper_of: Annotated[str, typer.Option(hidden=True)] = "",  # see pipeline/helpers.py
    data_dir: DataDir = Path("data"),
) -> None:
    """Run (or resume) an Optuna study; each trial is a nested MLflow run; register the best.

    Many workers, on one machine or many, cooperate on one study when they share --storage (a
    database) and --study-name: start the same command on each (--workers starts several here).
    """
    from pipeline.core.config import ConfigError
    from pipeline.tuning.settings import TuneSettings
    from pipeline.tuning.space import load_space

    for name, value, low in (("n_trials", n_trials, 0), ("timeout", timeout, 0),
                             ("epochs", epochs, 0), ("seed", seed, 0),
                             ("total_trials", total_trials, 0), ("heartbeat", heartbeat, 0),
                             ("workers", workers, 1)):
        if value < low:
            raise ConfigError(f"{name}: {value} must be >= {low}")
    if n_trials == 0 and timeout == 0 and total_trials == 0:
        raise ConfigError("n_trials, timeout and total_trials are all 0: the study would never "
                          "end; set one of them")
    if heartbeat and grace_period <= heartbeat:
        raise ConfigError(f"grace_period: {grace_period} must be greater than heartbeat "
                          f"({heartbeat}), or a live trial would look dead; such as "
                          f"{3 * heartbeat}")
    search_space = load_space(Path(space) if space else SPACES / DEFAULT_SPACE[model.value])
    from pipeline.core import data
    from pipeline.tuning import workers as helpers
    from pipeline.tracking import store
    from pipeline.core.config import first_line
    from pipeline.tuning.sampler import open_study
    from pipeline.tuning.storage import check_storage, lost_storage, mask_password
    from pipeline.tuning.study import tune as run_study
    from pipeline.tuning.summary import summary
    from pipeline.core.training import share_threads

    trials = helpers.shares(n_trials, workers)
    settings = TuneSettings(
        model=model.value, space=search_space, study_name=study_name or model.value,
        storage=storage_url, n_trials=n_trials or None, timeout=timeout or None,
        epochs=epochs or DEFAULT_EPOCHS[model.value],
        seed=seed, pruner=pruner.value, total_trials=total_trials or None,
        heartbeat=heartbeat or None, grace_period=grace_period, workers=len(trials),
        helper_of=helper_of or None)
    dataset = data.load(data_dir)
    storage = check_storage(settings)  # storage errors surface before any MLflow write
    store.configure()  # and tracking errors before the study is created
    common = ["--model", model.value, "--space", str(search_space.path), "--timeout",
              str(timeout), "--epochs", str(settings.epochs), "--study-name",
              settings.study_name, "--storage", storage_url, "--seed", str(seed), "--pruner",
              pruner.value, "--total-trials", str(total_trials), "--heartbeat", str(heartbeat),
              "--grace-period", str(grace_period), "--data-dir", str(data_dir), "--workers",
              "1"]
    team = None
    if len(trials) > 1:  # this process and its helpers share the threads
        import torch

        torch.set_num_threads(share_threads(len(trials)))
        team = helpers.Helpers([["--n-trials", str(n), *common] for n in trials[1:]],
                               torch.get_num_threads())
    try:
        study = run_study(settings, dataset, open_study(settings, storage), team)
    except KeyboardInterrupt:
        raise UserError("interrupted: the running trial ends FAIL and its MLflow run KILLED; "
                        "run the same command again to resume the study") from None
    except Exception as e:
        lost = lost_storage(e)  # the database went away mid-study
        if lost is None:
            raise
        raise UserError(f"storage {mask_password(storage_url)}: lost the database "
                        f"({first_line(lost.__cause__ or lost)}); completed trials are "
                        "kept: run the same command again to resume") from None
    if helper_of:
        return  # the main worker prints the summary
    print(summary(study))
    print(f"Look at it: mlflow ui --backend-store-uri {store.tracking_uri()}  and  "
          f"python -m pipeline dashboard --storage {mask_password(storage_url)}")


@app.command()
def evaluate(
    model_uri: Annotated[str, typer.Option(
        help="runs:/<run id>/model, models:/<name>@<alias>, models:/<name>/<version> or a "
             "logged model id m-...")] = "models:/fashion-mnist-fcn@champion",
    data_dir: DataDir = Path("data"),
) -> None:
    """Score a logged model on the test set in its own MLflow run: accuracy, loss, per-class
    precision / recall / F1, confusion matrix, misclassified images, JSON and CSV."""
    from pipeline.core import data
    from pipeline.tracking import store
    from pipeline.serving import evaluate as evaluation

    dataset = data.load(data_dir)
    store.configure(experiment=False)
    info = evaluation.resolve(model_uri)  # a bad URI fails here, before anything is written
    model = evaluation.load(model_uri)
    store.configure()
    run_id, result = evaluation.evaluate_run(model_uri, info, model, dataset)
    print(f"model {evaluation.normalize_uri(model_uri)}")
    print(evaluation.table(result))
    print(f"run {run_id}. Look at it: mlflow ui --backend-store-uri {store.tracking_uri()}")


@app.command()
def replicate(
    seeds: Annotated[int, typer.Option(
        help="Seeds per variant (0: 3, or 2 with --quick).")] = 0,
    epochs: Annotated[int, typer.Option(
        help="FCN epochs (0: the study's 50, or 2 with --quick).")] = 0,
    cnn_epochs: Annotated[int, typer.Option(
        help="CNN epochs (0: the study's 10, or 1 with --quick).")] = 0,
    workers: Annotated[int, typer.Option(
        help="Trainings at once, in separate processes sharing the threads (0: 2 on a CPU of "
             "2+ threads, 1 on a GPU).")] = 0,
    quick: Annotated[bool, typer.Option(
        "--quick", help="A glance in minutes: 10,000 training images, few epochs, 2 seeds.")]
    = False,
    out: Annotated[Path, typer.Option(help="Folder of the report (replaced).")] = Path("report"),
    from_results: Annotated[str, typer.Option(
        help="Only rebuild the report from this results.json of an earlier call.")] = "",
    data_dir: DataDir = Path("data"),
) -> None:
    """Re-run the study's tables over several seeds and write the replication report
    (Markdown, HTML, figures, JSON), also logged to MLflow."""
    from pipeline.replication.settings import ReplicateSettings

    if from_results:
        from pipeline.replication.replicate import render

        print(f"report: {render(Path(from_results), out)}")
        return
    settings = ReplicateSettings.build(seeds, epochs, cnn_epochs, quick, out, workers, data_dir)
    from pipeline.core import data
    from pipeline.tracking import store
    from pipeline.replication import replicate as replication

    dataset = data.load(data_dir)
    store.configure()
    run_id, path = replication.replicate(settings, dataset)
    print(f"report: {path} and {path.with_suffix('.html')} (also in run {run_id}, folder "
          f"report/). Look at it: mlflow ui --backend-store-uri {store.tracking_uri()}")


@app.command()
def dashboard(
    storage: Annotated[str, typer.Option(help="The study storage that tune used.")]
    = DEFAULT_STORAGE,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the web page.")] = 8080,
) -> None:
    """Start optuna-dashboard on a study storage (open http://HOST:PORT; Ctrl-C stops it)."""
    from optuna_dashboard import run_server

    from pipeline.tuning.storage import make_storage

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
    from pipeline.core.config import ConfigError

    if not 1 <= top <= 10:
        raise ConfigError(f"top: {top} must be in 1..10")
    from pipeline.serving import predict as predicting

    files, pixels = predicting.load_images(images)
    model = predicting.load_model(model_uri)
    for path, probs in zip(files, predicting.probabilities(model, pixels)):
        print(f"{path}: {predicting.describe(probs, top)}")


def main() -> None:
    """Entry point: typer in non-standalone mode, so every error becomes one line."""
    from pipeline.core import interrupt

    # `kill`, a CI timeout, `docker stop`, Ctrl-C: end runs KILLED, not RUNNING
    interrupt.install()
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as e:  # usage errors: bad option, bad type, bad choice
        print(f"error: {e.format_message()} (see --help)", file=sys.stderr)
        sys.exit(2)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if code == 130:  # typer turns KeyboardInterrupt (Ctrl-C, or SIGTERM above) into exit 130
        print("error: interrupted; MLflow runs in progress ended KILLED", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
