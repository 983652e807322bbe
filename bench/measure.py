"""The benchmark's measurements, one function per section; each returns its figures as a dict.

`python -m bench` (bench/run.py) runs them in order and prints bench/table.py's summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from pipeline.core.metrics import EPOCH_TIME, TEST_ACC, VAL_ACC

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict:
    from pipeline.replication.replicate import machine as describe

    return {"cores": os.cpu_count(), "description": describe()}


def matmul_rate(size: int = 2048, seconds: float = 3.0) -> dict:
    """float32 GFLOP/s of a size x size matmul, best of repeated timings after a warm-up."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    for _ in range(3):
        a @ b
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return {"size": size, "gflops": 2 * size**3 / best / 1e9}


def cli_latency(repeats: int = 3) -> dict:
    """Wall seconds (median of `repeats`) of `python -m pipeline --help` and of an argument
    error, each a fresh process: what a user waits before the first line."""
    out = {}
    for name, args in (
        ("help_s", ["--help"]),
        ("train_help_s", ["train", "--help"]),
        ("argument_error_s", ["train", "--lr", "-1"]),
    ):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "pipeline", *args],
                cwd=ROOT,
                capture_output=True,
                check=False,
            )
            times.append(time.perf_counter() - t0)
        out[name] = median(times)
    return out


def fcn_flops_per_epoch(hidden: tuple[int, ...], n_train: int, n_eval: int) -> float:
    """Matmul FLOPs one epoch actually performs (2 per multiply-add). Per training image: the
    forward pass, the weight gradients (as many again) and the input gradients of every layer but
    the first (the pixels need none; autograd skips them). Per validation / test image: the
    forward pass. Biases, ReLU, the loss and the optimizer are left out (under 1%)."""
    widths = (784, *hidden, 10)
    macs = sum(a * b for a, b in zip(widths, widths[1:]))
    first = widths[0] * widths[1]
    return 2 * (3 * macs - first) * n_train + 2 * macs * n_eval


def fcn_gemm_seconds(
    hidden: tuple[int, ...],
    batch: int,
    n_train: int,
    n_eval: int,
    eval_batch: int,
    repeats: int = 3,
) -> float:
    """Wall seconds of one epoch's matmuls alone, at the exact shapes our core runs them (per
    training batch: the forward products, the weight gradients, the input gradients of every
    layer but the first; then the forward products of the evaluation batches), on random
    tensors, best of `repeats`: a floor the batch's shapes allow, tighter than the 2048^2 rate."""
    import torch

    widths = (784, *hidden, 10)
    weights = [torch.randn(out, fan_in) for fan_in, out in zip(widths, widths[1:])]
    acts = {b: [torch.randn(b, w) for w in widths] for b in (batch, eval_batch)}
    grads = [torch.randn(batch, w) for w in widths]

    def forward(b: int) -> None:
        for layer, w in enumerate(weights):
            torch.mm(acts[b][layer], w.t())

    def epoch() -> None:
        for _ in range(n_train // batch):
            forward(batch)
            for layer in reversed(range(len(weights))):
                torch.mm(grads[layer + 1].t(), acts[batch][layer])  # weight gradient
                if layer > 0:
                    torch.mm(grads[layer + 1], weights[layer])  # input gradient
        for _ in range(-(-n_eval // eval_batch)):
            forward(eval_batch)

    epoch()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        epoch()
        best = min(best, time.perf_counter() - t0)
    return best


def fcn_core(data, epochs: int, gflops: float) -> dict:
    from pipeline.core.config import TrainConfig
    from pipeline.core.training import EVAL_BATCH, train

    config = TrainConfig(epochs=epochs)  # the study's base: 784-300-200-10, SGD 0.02, batch 512
    result = train(config, data, progress=False)
    n_train = len(data.train) // config.batch_size * config.batch_size
    flops = fcn_flops_per_epoch(config.hidden, n_train, len(data.val) + len(data.test))
    floor = epochs * flops / (gflops * 1e9)
    gemm = fcn_gemm_seconds(
        config.hidden,
        config.batch_size,
        len(data.train),
        len(data.val) + len(data.test),
        EVAL_BATCH,
    )
    # The same epochs with widths too small to cost anything (784-8-10): what every step and
    # evaluation pays whatever the BLAS (normalization, loss, optimizer, dispatch).
    narrow = train(TrainConfig(epochs=min(epochs, 10), hidden=(8,)), data, progress=False)
    return {
        "epochs": epochs,
        "wall_s": result.train_time_s,
        "epoch_s_median": median([h[EPOCH_TIME] for h in result.history]),
        "narrow_epoch_s": median([h[EPOCH_TIME] for h in narrow.history]),
        "gflop_per_epoch": flops / 1e9,
        "floor_s": floor,
        "ratio_to_floor": result.train_time_s / floor,
        "gemm_epoch_s": gemm,
        "gemm_gflops": flops / gemm / 1e9,
        "ratio_to_gemm_floor": result.train_time_s / (epochs * gemm),
        TEST_ACC: result.final[TEST_ACC],
        VAL_ACC: result.final[VAL_ACC],
    }


def study_loop(data_dir: Path, epochs: int, train_subset: int | None) -> dict:
    from bench import study_loop as loop
    from pipeline.core.data import find_raw_files

    root = loop.torchvision_root(data_dir, find_raw_files(data_dir))
    out = loop.train(root, epochs, train_subset=train_subset)
    return {
        "epochs": epochs,
        "wall_s": out["wall_s"],
        "epoch_s_median": median(out["epoch_times_s"]),
        TEST_ACC: out["final"][TEST_ACC],
        VAL_ACC: out["final"][VAL_ACC],
    }


def cnn(data, name: str, epochs: int | None, thresholds: tuple[float, ...] = ()) -> dict:
    """One CNN training, `name` a recipe of pipeline/core/recipes.py (`epochs` None: its own):
    its time, final and best test accuracy, and the wall seconds until test accuracy first
    reached each threshold."""
    from pipeline.core.recipes import RECIPES
    from pipeline.core.stats import time_to_accuracy
    from pipeline.core.training import train

    config = RECIPES[name]
    config = dataclasses.replace(config, epochs=epochs or config.epochs)
    result = train(config, data, progress=False)
    out = {
        "config": config.to_dict(),
        "wall_s": result.train_time_s,
        "epoch_s_median": median([h[EPOCH_TIME] for h in result.history]),
        TEST_ACC: result.final[TEST_ACC],
        VAL_ACC: result.final[VAL_ACC],
        "best_test_acc": max(h[TEST_ACC] for h in result.history),
    }
    for t in thresholds:
        out[f"seconds_to_test_{100 * t:.1f}"] = time_to_accuracy(result.history, t, TEST_ACC)
    return out


def recipes(data, seeds: tuple[int, ...], epochs: int | None) -> dict:
    """Accuracy over seeds, side by side: our fast CNN recipe (`fast_cnn`: 50,000
    training images, 10,000 held out) and the same trained on all 60,000 as a final model
    (`--holdout false`), their runs alternated seed by seed so that a machine's drift hits both
    alike; then the FCN recipe that passes 90.5% (`wide_fcn`). Per recipe: each
    seed's test/val accuracy (val: None without a held-out split) and wall time, and their
    mean and sample standard deviation."""
    import numpy as np

    from pipeline.core.recipes import RECIPES
    from pipeline.core.stats import time_to_accuracy
    from pipeline.core.training import train

    def replaced(config, **changes):
        return dataclasses.replace(config, epochs=epochs or config.epochs, **changes)

    configs = {
        "fast_cnn": replaced(RECIPES["fast_cnn"]),
        "fast_cnn_all": replaced(RECIPES["fast_cnn"], holdout=False),
        "wide_fcn": replaced(RECIPES["wide_fcn"]),
    }
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    order = [(name, seed) for seed in seeds for name in ("fast_cnn", "fast_cnn_all")]
    order += [("wide_fcn", seed) for seed in seeds]
    for name, seed in order:
        result = train(dataclasses.replace(configs[name], seed=seed), data, progress=False)
        runs[name].append(
            {
                "seed": seed,
                TEST_ACC: result.final[TEST_ACC],
                VAL_ACC: result.final.get(VAL_ACC),
                "wall_s": result.train_time_s,
                "best_test_acc": max(h[TEST_ACC] for h in result.history),
                "seconds_to_test_94.0": time_to_accuracy(result.history, 0.94, TEST_ACC),
            }
        )
        print(
            f"... {name} seed {seed}: test {100 * result.final[TEST_ACC]:.2f}% in "
            f"{result.train_time_s:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    out = {}
    for name, rows in runs.items():
        summary = {"config": configs[name].to_dict(), "runs": rows}
        for key in (TEST_ACC, VAL_ACC, "wall_s"):
            if any(r[key] is None for r in rows):  # val_acc of a model trained on all 60,000
                continue
            values = np.array([r[key] for r in rows])
            summary[f"{key}_mean"] = float(values.mean())
            summary[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[name] = summary
    return out


def tracking_overhead(data, epochs: int, tmp: Path) -> dict:
    """The same FCN training plain; as a tracked `train` run with its logged model, with
    MLflow's system metrics off and on (every 5 s, as train and tune sample); and as a `tune`
    trial. Also the disk one logged model takes, against the bare state_dict trials kept
    before."""
    import mlflow
    import torch

    from pipeline.core.config import TrainConfig
    from pipeline.core.training import train
    from pipeline.tracking import log as tracklog
    from pipeline.tuning.space import load_space
    from pipeline.tuning.study import tune
    from pipeline.tuning.tune_settings import TuneSettings

    config = TrainConfig(epochs=epochs)
    train(dataclasses.replace(config, epochs=1), data, progress=False)  # warm-up
    plain = train(config, data, progress=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    mlflow.set_experiment("bench")
    tracked, model_bytes = {}, 0
    # warm-up of the tracked path (the first torch.export in a process takes ~1.5 s)
    tracklog.train_run(dataclasses.replace(config, epochs=1), data, confusion=False, log_model=True)
    for system in ("false", "true", "false", "true"):  # alternated: drift hits both alike
        os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = system
        t0 = time.perf_counter()
        run = tracklog.train_run(config, data, confusion=False, log_model=True)
        tracked.setdefault(system, []).append(time.perf_counter() - t0)
        location = mlflow.get_logged_model(run.model_id).artifact_location
        model_bytes = sum(
            f.stat().st_size
            for f in Path(location.removeprefix("file://")).rglob("*")
            if f.is_file()
        )
    del os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"]
    state = tmp / "model_state.pt"
    torch.save(plain.model.state_dict(), state)
    space = tmp / "fixed.yaml"
    space.write_text(
        "".join(
            f"{k}: {v}\n"
            for k, v in config.to_dict().items()
            if k not in ("model", "epochs", "seed", "hidden")
        )
        + "hidden: {type: layers, depth: [2, 2], width: {low: 200, high: 300}}\n"
    )
    settings = TuneSettings(
        model="fcn",
        space=load_space(space),
        study_name="bench",
        storage=f"sqlite:///{tmp / 'optuna.db'}",
        n_trials=1,
        timeout=None,
        epochs=epochs,
        seed=0,
        pruner="none",
    )
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its summary would read as the bench's
        study = tune(settings, data)
    tune_call = time.perf_counter() - t0
    trial = study.trials[0]
    in_trial = (trial.datetime_complete - trial.datetime_start).total_seconds()
    off, on = median(tracked["false"]), median(tracked["true"])
    return {
        "epochs": epochs,
        "plain_s": plain.train_time_s,
        "tracked_run_s": on,
        "tracked_no_system_metrics_s": off,
        "system_metrics_ratio": on / off,
        "trial_s": in_trial,
        "tune_call_s": tune_call,
        "tracked_ratio": on / plain.train_time_s,
        "trial_ratio": in_trial / plain.train_time_s,
        "model_bytes": model_bytes,
        "state_dict_bytes": state.stat().st_size,
    }


def trials_per_hour(data_dir: Path, seconds: float, epochs: int, tmp: Path) -> dict:
    """The default FCN study for `seconds`: `tune --workers 1` (one process, all threads), then
    `tune --workers 2` (two processes of half the threads each), each on a fresh SQLite
    storage whose first trial (a start point) ran before the clock starts, in both modes alike.
    Counts every trial that started in the window and finished (complete or pruned)."""
    import optuna

    from pipeline.core.training import share_threads

    out = {"seconds": seconds, "epochs": epochs}
    for mode, workers in (("1x2", 1), ("2x1", 2)):
        storage = f"sqlite:///{tmp / f'optuna-{mode}.db'}"
        env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=f"sqlite:///{tmp / f'mlflow-{mode}.db'}",
            MLFLOW_EXPERIMENT_NAME="bench",
        )
        env.pop("MLFLOW_RUN_ID", None)

        def tune(*args: str, storage: str = storage, env: dict = env) -> None:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    "tune",
                    "--epochs",
                    str(epochs),
                    "--storage",
                    storage,
                    "--study-name",
                    "bench",
                    "--data-dir",
                    str(data_dir),
                    *args,
                ],
                env=env,
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

        tune("--n-trials", "1", "--workers", "1")
        t0 = time.perf_counter()
        tune("--n-trials", "0", "--timeout", str(seconds), "--workers", str(workers))
        wall = time.perf_counter() - t0
        trials = optuna.load_study(study_name="bench", storage=storage).trials
        done = [t for t in trials if t.state.is_finished() and t.number > 0]
        out[mode] = {
            "processes": workers,
            "threads": share_threads(workers),
            "wall_s": wall,
            "trials": len(done),
            "trials_per_hour": 3600 * len(done) / wall,
        }
    out["best"] = max(("1x2", "2x1"), key=lambda m: out[m]["trials_per_hour"])
    return out


def serving(
    data,
    tmp: Path,
    epochs: int,
    seconds: float,
    workers: tuple[int, ...] = (1,),
    clients: tuple[int, ...] = (1, 4, 16),
    batches: tuple[int, ...] = (1, 64),
) -> dict:
    """The base FCN trained for `epochs` and logged as `train` logs it, served by `mlflow
    models serve` on 127.0.0.1 (bench/serve.py) with each number of uvicorn `workers` (each
    with its share of the cores as torch threads), and driven for `seconds` by each number of
    `clients` (threads of this process, each with its keep-alive connection) with requests of
    each batch size: requests/s, images/s, p50/p99 latency and errors (any answer not HTTP 200,
    strict JSON and the bare model's classes). Beside them, the same batches through the bare
    torch module and through the pyfunc model in this process (what the server adds on top:
    HTTP, JSON both ways, MLflow's schema check)."""
    import mlflow
    import torch

    from bench import serve
    from pipeline.core.config import TrainConfig
    from pipeline.tracking import log as tracklog

    config = TrainConfig(epochs=epochs)  # the study's base: 784-300-200-10
    store = f"sqlite:///{tmp / 'serving.db'}"
    mlflow.set_tracking_uri(store)
    # the model's files in tmp too (the default, ./mlruns, would be the current folder)
    mlflow.set_experiment(
        experiment_id=mlflow.MlflowClient().create_experiment(
            "bench-serving", artifact_location=str(tmp / "serving-artifacts")
        )
    )
    run = tracklog.train_run(config, data, confusion=False, log_model=True)
    model_uri = f"models:/{run.model_id}"
    module = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    requests = {b: serve.requests_for(module, data.test.images, b, 16) for b in batches}

    def per_call(f, x) -> float:
        """Median seconds of f(x) over half a second, after a warm-up."""
        for _ in range(3):
            f(x)
        times, end = [], time.perf_counter() + 0.5
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            f(x)
            times.append(time.perf_counter() - t0)
        return median(times)

    bare = {}
    with torch.inference_mode():
        for b in batches:
            x = requests[b][0].pixels
            forward = per_call(module, x)
            bare[str(b)] = {
                "forward_s": forward,
                "forward_images_per_s": b / forward,
                "pyfunc_s": per_call(pyfunc.predict, x.numpy()),
            }
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = store
    cores, cells = os.cpu_count() or 1, []
    for w in workers:
        threads = max(1, cores // w) if w > 1 else None  # one worker: torch's default
        with serve.served(model_uri, env, tmp / f"serve-{w}.log", w, threads) as port:
            for b in batches:
                serve.drive(port, requests[b], max(clients), min(1.0, seconds))  # warm-up
                for c in clients:
                    cell = serve.drive(port, requests[b], c, seconds).figures()
                    forward_ms = 1e3 * bare[str(b)]["forward_s"]
                    cell.update(
                        workers=w,
                        threads=threads or torch.get_num_threads(),
                        ratio_to_forward=cell["p50_ms"] and cell["p50_ms"] / forward_ms,
                    )
                    cells.append(cell)
    return {
        "model": tracklog.describe(config),
        "epochs": epochs,
        "model_uri": model_uri,
        TEST_ACC: run.result.final[TEST_ACC],
        "seconds_per_cell": seconds,
        "bare": bare,
        "cells": cells,
    }
