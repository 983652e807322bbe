"""What prepare, train, evaluate, replicate and predict do once their options are checked.

Each takes its options object (pipeline/cli/command_settings.py and the classes it names); heavy
libraries are imported here, inside the functions, so `--help` and argument errors stay instant.
Data is loaded before any MLflow store is touched: a data error writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.cli.command_settings import EvaluateOptions, PredictOptions, PrepareOptions
from pipeline.core.metrics import TEST_ACC, VAL_ACC
from pipeline.core.recipes import TAG, TrainOptions
from pipeline.replication.replicate_settings import ReplicateOptions


def prepare(opts: PrepareOptions) -> None:
    """Find, verify (SHA-256) and cache FashionMNIST; write sample grids to DATA_DIR/samples/."""
    from pipeline.core import data, plots

    dataset = data.load(opts.data_dir)
    paths = plots.save_sample_grids(
        dataset.train.images, dataset.train.labels, opts.data_dir / "samples"
    )
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run -e prepare`: show them in the run
        from pipeline.tracking import store

        store.log_files(paths, "samples")
    print(
        f"FashionMNIST verified and cached in {opts.data_dir / data.CACHE_NAME}; "
        f"sample grids: {', '.join(str(p) for p in paths)}"
    )


def train(opts: TrainOptions) -> None:
    """Train one model as one MLflow run: per-epoch metrics, curves, confusion matrix, model.
    `--recipe fast_cnn` trains a named configuration; the options given beside it override it."""
    from pipeline.core import data, memory
    from pipeline.core.training import pick_device
    from pipeline.tracking import log as tracklog
    from pipeline.tracking import store

    dataset = data.load(opts.data_dir)
    config = opts.config
    memory.check_fits(  # before any run: a model too big for memory is one line, not the OOM killer
        config,
        pick_device(),
        what=f"--model {config.model}"
        + (f" --hidden {memory.layers(config.hidden)}" if config.model == "fcn" else ""),
        fix="use fewer or narrower --hidden layers or a smaller --batch-size"
        if config.model == "fcn"
        else "use a smaller --batch-size",
    )
    store.configure()
    tags = {TAG: opts.recipe} if opts.recipe else None  # the params say what it overrode
    trained = tracklog.train_run(config, dataset, log_model=True, tags=tags)
    final, result = trained.result.final, trained.result
    val = f"val_acc {final[VAL_ACC]:.4f}, " if VAL_ACC in final else "no val split, "
    print(
        f"run {trained.run_id}: {val}test_acc "
        f"{final[TEST_ACC]:.4f}, {result.train_time_s:.1f} s; model models:/"
        f"{trained.model_id}. {store.look_at_it()}"
    )


def evaluate(opts: EvaluateOptions) -> None:
    """Score a logged model on the test set in its own MLflow run: accuracy, loss, per-class
    precision / recall / F1, confusion matrix, misclassified images, JSON and CSV."""
    from pipeline.core import data
    from pipeline.serving import evaluate as evaluation
    from pipeline.tracking import store

    dataset = data.load(opts.data_dir)
    store.configure(experiment=False)
    close_dead_runs()
    info = evaluation.resolve(opts.model_uri)  # a bad URI fails here, before any write
    model = evaluation.load(opts.model_uri)
    store.configure()
    run_id, result = evaluation.evaluate_run(opts.model_uri, info, model, dataset)
    print(f"model {evaluation.normalize_uri(opts.model_uri)}")
    print(evaluation.table(result))
    print(f"run {run_id}. {store.look_at_it()}")


def replicate(opts: ReplicateOptions) -> None:
    """Re-run the study's tables over several seeds and write the replication report
    (Markdown, HTML, figures, JSON), also logged to MLflow."""
    if opts.from_results:
        from pipeline.replication.replicate import render

        print(f"report: {render(Path(opts.from_results), opts.out)}")
        return
    settings = opts.resolve()
    from pipeline.core import data
    from pipeline.replication import replicate as replication
    from pipeline.replication.report.folder import check_out_dir
    from pipeline.tracking import store

    check_out_dir(settings.out_dir)  # before the data and the store: a bad --out writes nothing
    dataset = data.load(opts.data_dir)
    store.configure()
    run_id, path = replication.replicate(settings, dataset)
    print(
        f"report: {path} and {path.with_suffix('.html')} (also in run {run_id}, folder "
        f"report/). {store.look_at_it()}"
    )


def predict(opts: PredictOptions) -> None:
    """Classify images: each becomes 28x28 grayscale (inverted if dark-on-light); prints the
    most likely classes with their probabilities."""
    from pipeline.serving import predict as predicting
    from pipeline.tracking import store

    files, pixels = predicting.load_images(list(opts.images))
    store.configure(experiment=False)
    close_dead_runs()
    model = predicting.load_model(opts.model_uri)
    for path, probs in zip(files, predicting.probabilities(model, pixels)):
        print(f"{path}: {predicting.describe(probs, opts.top)}")


def close_dead_runs() -> None:
    """End KILLED the runs that dead processes of this host left RUNNING (tracking/orphans.py),
    as every command that opens the store does; a SQLite store that does not exist is not
    created for it (evaluate and predict then say the model is not found)."""
    import mlflow

    from pipeline.serving.evaluate import sqlite_file
    from pipeline.tracking import orphans

    path = sqlite_file(mlflow.get_tracking_uri())
    if path is None or path.exists():
        orphans.close_orphans()
