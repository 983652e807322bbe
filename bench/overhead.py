"""What runs around a training costs, one function per section (as in bench/measure.py):
MLflow tracking and an Optuna trial around the same training, tune's trials per hour with one
or two worker processes, and a model served by `mlflow models serve` under concurrent clients.
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
from typing import Any

from bench import ROOT
from pipeline.core.metrics import TEST_ACC


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
    from pipeline.tuning.space import SEARCHABLE
    from pipeline.tuning.study import tune
    from pipeline.tuning.tune_settings import TuneOptions

    config = TrainConfig(epochs=epochs)
    train(dataclasses.replace(config, epochs=1), data, progress=False)  # warm-up
    plain = train(config, data, progress=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    mlflow.set_experiment("bench")
    tracked: dict[str, list[float]] = {}
    model_bytes = 0
    # warm-up of the tracked path (the first torch.export in a process takes ~1.5 s)
    tracklog.train_run(dataclasses.replace(config, epochs=1), data, confusion=False, log_model=True)
    for system in ("false", "true", "false", "true"):  # alternated: drift hits both alike
        os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = system
        t0 = time.perf_counter()
        run = tracklog.train_run(config, data, confusion=False, log_model=True)
        tracked.setdefault(system, []).append(time.perf_counter() - t0)
        assert run.model_id is not None  # log_model=True
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
            f"{k}: {v}\n" for k, v in config.to_dict().items() if k in SEARCHABLE and k != "hidden"
        )
        + "hidden: {type: layers, depth: [2, 2], width: {low: 200, high: 300}}\n"
    )
    settings = TuneOptions(
        space=str(space),
        study_name="bench",
        storage=f"sqlite:///{tmp / 'optuna.db'}",
        n_trials=1,
        timeout=0,
        epochs=epochs,
        pruner="none",
    ).resolve()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its summary would read as the bench's
        study = tune(settings, data)
    tune_call = time.perf_counter() - t0
    trial = study.trials[0]
    assert trial.duration is not None  # the study's one trial has ended
    in_trial = trial.duration.total_seconds()
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

    out: dict[str, Any] = {"seconds": seconds, "epochs": epochs}
    for mode, workers in (("1x2", 1), ("2x1", 2)):
        storage = f"sqlite:///{tmp / f'optuna-{mode}.db'}"
        env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=f"sqlite:///{tmp / f'mlflow-{mode}.db'}",
            MLFLOW_EXPERIMENT_NAME="bench",
        )
        # the tracking section's store leaves its experiment's id behind: not in this store
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
            env.pop(name, None)

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
    from pipeline.core.words import describe
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
        "model": describe(config),
        "epochs": epochs,
        "model_uri": model_uri,
        TEST_ACC: run.result.final[TEST_ACC],
        "seconds_per_cell": seconds,
        "bare": bare,
        "cells": cells,
    }
