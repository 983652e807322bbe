"""The benchmark's measurements of training, one function per section; each returns its
figures as a dict. What runs around a training (tracking, tune, a served model) is measured in
bench/overhead.py.

`python -m bench` (bench/run.py) runs them in order and prints bench/table.py's summary.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from bench import ROOT
from pipeline.core.metrics import EPOCH_TIME, TEST_ACC, VAL_ACC


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
