"""The speed benchmark: one run, one machine, every figure of issue 5 (`python -m bench --help`).

Measures, in this order: how long `python -m pipeline --help` and an argument error take; the
float32 matmul rate (the floor's reference); the base FCN for 50 epochs through our core, its
FLOPs and its ratio to the floor; the same through a faithful copy of the study's DataLoader
loop; the study's CNN for 10 epochs as the replication report trains it; our fast CNN recipe and its time to 93.5% / 94.0% test accuracy; the cost of MLflow tracking
and of an Optuna trial around the same training; and tune's trials per hour with one 2-thread
process vs two 1-thread processes on one storage.
It prints a table and writes every figure as JSON. It asserts nothing: it is a tool, not a test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Annotated

import typer

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("cli", "matmul", "fcn", "study_loop", "study_cnn", "fast_cnn", "tracking", "tune")

app = typer.Typer(add_completion=False)


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
    return {"size": size, "gflops": 2 * size ** 3 / best / 1e9}


def cli_latency(repeats: int = 3) -> dict:
    """Wall seconds (median of `repeats`) of `python -m pipeline --help` and of an argument
    error, each a fresh process: what a user waits before the first line."""
    out = {}
    for name, args in (("help_s", ["--help"]), ("train_help_s", ["train", "--help"]),
                       ("argument_error_s", ["train", "--lr", "-1"])):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT,
                           capture_output=True, check=False)
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


def fcn_gemm_seconds(hidden: tuple[int, ...], batch: int, n_train: int, n_eval: int,
                     eval_batch: int, repeats: int = 3) -> float:
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
    gemm = fcn_gemm_seconds(config.hidden, config.batch_size, len(data.train),
                            len(data.val) + len(data.test), EVAL_BATCH)
    return {"epochs": epochs, "wall_s": result.train_time_s,
            "epoch_s_median": median([h["epoch_time_s"] for h in result.history]),
            "gflop_per_epoch": flops / 1e9, "floor_s": floor,
            "ratio_to_floor": result.train_time_s / floor,
            "gemm_epoch_s": gemm, "gemm_gflops": flops / gemm / 1e9,
            "ratio_to_gemm_floor": result.train_time_s / (epochs * gemm),
            "test_acc": result.final["test_acc"], "val_acc": result.final["val_acc"]}


def study_loop(data_dir: Path, epochs: int, train_subset: int | None) -> dict:
    from bench import study_loop as loop
    from pipeline.core.data import find_raw_files

    root = loop.torchvision_root(data_dir, find_raw_files(data_dir))
    out = loop.train(root, epochs, train_subset=train_subset)
    return {"epochs": epochs, "wall_s": out["wall_s"],
            "epoch_s_median": median(out["epoch_times_s"]),
            "test_acc": out["final"]["test_acc"], "val_acc": out["final"]["val_acc"]}


def cnn(data, name: str, epochs: int | None, thresholds: tuple[float, ...] = ()) -> dict:
    """One CNN training, `name` a config of pipeline.replication.experiments (for `epochs`, None: its own):
    its time, final and best test accuracy, and the wall seconds until test accuracy first
    reached each threshold."""
    from pipeline.replication import experiments
    from pipeline.replication.stats import time_to_accuracy
    from pipeline.core.training import train

    config = getattr(experiments, name)
    config = dataclasses.replace(config, epochs=epochs or config.epochs)
    result = train(config, data, progress=False)
    out = {"config": config.to_dict(), "wall_s": result.train_time_s,
           "epoch_s_median": median([h["epoch_time_s"] for h in result.history]),
           "test_acc": result.final["test_acc"], "val_acc": result.final["val_acc"],
           "best_test_acc": max(h["test_acc"] for h in result.history)}
    for t in thresholds:
        out[f"seconds_to_test_{100 * t:.1f}"] = time_to_accuracy(result.history, t, "test_acc")
    return out


def tracking_overhead(data, epochs: int, tmp: Path) -> dict:
    """The same FCN training plain, as a tracked `train` run, and as a `tune` trial."""
    import mlflow

    from pipeline.tracking import log as tracklog

    from pipeline.tuning.settings import TuneSettings
    from pipeline.tuning.study import tune
    from pipeline.core.config import TrainConfig
    from pipeline.tuning.space import load_space
    from pipeline.core.training import train

    config = TrainConfig(epochs=epochs)
    train(dataclasses.replace(config, epochs=1), data, progress=False)  # warm-up
    plain = train(config, data, progress=False).train_time_s
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    mlflow.set_experiment("bench")
    t0 = time.perf_counter()
    tracklog.train_run(config, data, confusion=False)
    tracked_run = time.perf_counter() - t0
    space = tmp / "fixed.yaml"
    space.write_text("".join(f"{k}: {v}\n" for k, v in config.to_dict().items()
                             if k not in ("model", "epochs", "seed", "hidden"))
                     + "hidden: {type: layers, depth: [2, 2], width: {low: 200, high: 300}}\n")
    settings = TuneSettings(model="fcn", space=load_space(space), study_name="bench",
                                   storage=f"sqlite:///{tmp / 'optuna.db'}", n_trials=1,
                                   timeout=None, epochs=epochs, seed=0, pruner="none")
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its summary would read as the bench's
        study = tune(settings, data)
    tune_call = time.perf_counter() - t0
    trial = study.trials[0]
    in_trial = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return {"epochs": epochs, "plain_s": plain, "tracked_run_s": tracked_run,
            "trial_s": in_trial, "tune_call_s": tune_call,
            "tracked_ratio": tracked_run / plain, "trial_ratio": in_trial / plain}


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
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / f'mlflow-{mode}.db'}",
                   MLFLOW_EXPERIMENT_NAME="bench")
        env.pop("MLFLOW_RUN_ID", None)

        def tune(*args: str) -> None:
            subprocess.run([sys.executable, "-m", "pipeline", "tune", "--epochs", str(epochs),
                            "--storage", storage, "--study-name", "bench", "--data-dir",
                            str(data_dir), *args], env=env, cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        tune("--n-trials", "1", "--workers", "1")
        t0 = time.perf_counter()
        tune("--n-trials", "0", "--timeout", str(seconds), "--workers", str(workers))
        wall = time.perf_counter() - t0
        trials = optuna.load_study(study_name="bench", storage=storage).trials
        done = [t for t in trials if t.state.is_finished() and t.number > 0]
        out[mode] = {"processes": workers, "threads": share_threads(workers), "wall_s": wall,
                     "trials": len(done), "trials_per_hour": 3600 * len(done) / wall}
    out["best"] = max(("1x2", "2x1"), key=lambda m: out[m]["trials_per_hour"])
    return out


def table(results: dict) -> str:
    m, lines = results["machine"], []
    lines.append(f"machine: {m['description']}"
                 + ("  [QUICK: tiny sizes, not comparable]" if results["quick"] else ""))
    r = results
    if "cli" in r:
        c = r["cli"]
        lines.append(f"CLI latency: --help {c['help_s']:.2f} s, train --help "
                     f"{c['train_help_s']:.2f} s, an argument error {c['argument_error_s']:.2f} s")
    if "matmul" in r:
        lines.append(f"matmul {r['matmul']['size']}^2 float32:   {r['matmul']['gflops']:.0f} "
                     "GFLOP/s")
    if "fcn" in r:
        f = r["fcn"]
        lines.append(f"base FCN, our core:        {f['wall_s']:.1f} s for {f['epochs']} epochs "
                     f"({f['epoch_s_median']:.2f} s/epoch; {f['gflop_per_epoch']:.0f} GFLOP/epoch;"
                     f" floor {f['floor_s']:.1f} s; {f['ratio_to_floor']:.2f}x the floor), "
                     f"test {100 * f['test_acc']:.2f}%")
        lines.append(f"  its matmuls alone, at the batch's shapes: {f['gemm_epoch_s']:.2f} s/epoch "
                     f"({f['gemm_gflops']:.0f} GFLOP/s); the whole training is "
                     f"{f['ratio_to_gemm_floor']:.2f}x that")
    if "study_loop" in r:
        s = r["study_loop"]
        line = (f"base FCN, study's loop:    {s['wall_s']:.1f} s for {s['epochs']} epochs "
                f"({s['epoch_s_median']:.2f} s/epoch), test {100 * s['test_acc']:.2f}%")
        if "fcn" in r and r["fcn"]["epochs"] == s["epochs"] and not r["quick"]:
            line += f"; ours is {s['wall_s'] / r['fcn']['wall_s']:.1f}x faster"
        elif "fcn" in r:
            line += (f"; per epoch ours is "
                     f"{s['epoch_s_median'] / r['fcn']['epoch_s_median']:.1f}x faster")
        lines.append(line)
    for key, label in (("study_cnn", "study CNN"), ("fast_cnn", "fast CNN recipe")):
        if key in r:
            c = r[key]
            lines.append(f"{label}, {c['config']['epochs']} epochs: ".ljust(27)
                         + f"{c['wall_s']:.1f} s ({c['epoch_s_median']:.1f} s/epoch), test "
                         f"{100 * c['test_acc']:.2f}% (best epoch {100 * c['best_test_acc']:.2f}%)")
            marks = ", ".join(f"{k.split('_')[-1]}%: "
                              + ("not reached" if v is None else f"{v:.0f} s")
                              for k, v in c.items() if k.startswith("seconds_to_test"))
            if marks:
                lines.append(f"  time to test accuracy: {marks}")
    if "tracking" in r:
        t = r["tracking"]
        lines.append(f"tracking overhead, {t['epochs']} epochs: plain {t['plain_s']:.1f} s, "
                     f"MLflow run {t['tracked_run_s']:.1f} s ({t['tracked_ratio']:.2f}x), "
                     f"Optuna trial {t['trial_s']:.1f} s ({t['trial_ratio']:.2f}x)")
    if "tune" in r:
        t = r["tune"]
        lines.append(f"tune trials/hour ({t['seconds']:.0f} s each, {t['epochs']} epochs): "
                     f"1 process x 2 threads {t['1x2']['trials_per_hour']:.0f}, 2 processes x 1 "
                     f"thread {t['2x1']['trials_per_hour']:.0f} -> {t['best']}")
    return "\n".join(lines)


@app.command()
def main(
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes: under a minute.")] = False,
    only: Annotated[str, typer.Option(
        help=f"Comma-separated sections ({', '.join(SECTIONS)}); empty: all.")] = "",
    out: Annotated[Path, typer.Option(help="JSON file of every figure.")]
    = Path("bench_results.json"),
    data_dir: Annotated[Path, typer.Option(help="FashionMNIST folder, as for prepare.")]
    = Path("data"),
    tune_seconds: Annotated[float, typer.Option(help="Budget of each tune measurement.")] = 300,
) -> None:
    """Measure training speed against the machine's matmul floor and the study's loop."""
    sections = [s for s in only.split(",") if s] or list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise typer.BadParameter(f"unknown sections {sorted(unknown)}; choose from "
                                 f"{', '.join(SECTIONS)}")
    from pipeline.core import data as data_module

    data = data_module.load(data_dir)
    if quick:
        small = data_module.Split
        data = data_module.FashionMNIST(
            small(data.train.images[:5000], data.train.labels[:5000]),
            small(data.val.images[:2000], data.val.labels[:2000]),
            small(data.test.images[:2000], data.test.labels[:2000]), data.digest)
    results: dict = {"machine": machine(), "quick": quick,
                     "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    steps = {
        "cli": lambda: cli_latency(1 if quick else 3),
        "matmul": lambda: matmul_rate(1024 if quick else 2048, 1 if quick else 3),
        "fcn": lambda: fcn_core(data, 2 if quick else 50,
                                results.get("matmul", {}).get("gflops") or matmul_rate()["gflops"]),
        "study_loop": lambda: study_loop(data_dir, 1 if quick else 50, 5000 if quick else None),
        # The study's CNN as the replication report trains it (experiments.CNN), then our fast
        # recipe (experiments.FAST_CNN) with its time-to-test-accuracy.
        "study_cnn": lambda: cnn(data, "CNN", 1 if quick else None),
        "fast_cnn": lambda: cnn(data, "FAST_CNN", 1 if quick else None, (0.935, 0.94)),
        "tracking": lambda: tracking_overhead(data, 1 if quick else 5, tmp),
        "tune": lambda: trials_per_hour(data_dir, tune_seconds, 20, tmp),
    }
    if quick and "tune" in sections and not only:
        sections.remove("tune")  # process start-ups alone take longer than a minute
        results["skipped"] = ["tune (--quick)"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in sections:
            t0 = time.perf_counter()
            results[name] = steps[name]()
            print(f"... {name} measured in {time.perf_counter() - t0:.0f} s", file=sys.stderr,
                  flush=True)
            out.write_text(json.dumps(results, indent=1))  # a later failure keeps these
    print(table(results))
    print(f"(every figure in {out})")


def entry() -> None:
    try:
        app(standalone_mode=False)
    except typer.TyperException as e:
        print(f"error: {e.format_message()}", file=sys.stderr)
        sys.exit(2)
