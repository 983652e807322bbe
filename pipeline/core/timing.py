"""How long one epoch of a configuration takes on this machine, from a few timed steps.

`epoch_seconds(config, data)` times training steps of `config` (after a warm-up) and one
evaluation batch, and scales them to a whole epoch: the training split's batches plus the
val and test passes that every epoch ends with. About a second and a half of work on any
machine, so `tune` can size its default study to the machine it runs on (tuning/search/budget.py).
The steps are timed in WINDOWS windows and the median window counts: a process starting beside
this one (another study loading its data) slows one window, not the estimate.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from pipeline.core.config import TrainConfig
from pipeline.core.data import FashionMNIST
from pipeline.core.models import build_model
from pipeline.core.optimizers import make_optimizer
from pipeline.core.training import EVAL_BATCH, pick_device, predict, train_step

WARMUP_STEPS = 3  # the first steps allocate buffers and pick kernels
MIN_STEPS = 3  # per window
WINDOWS = 3


def epoch_seconds(
    config: TrainConfig,
    data: FashionMNIST,
    seconds: float = 1.2,
    device: torch.device | None = None,
) -> float:
    """Estimated wall seconds of one epoch of `config` (training steps, then the val and test
    passes), from about `seconds` of timed training steps and one evaluation batch."""
    device = device or pick_device()
    config = dataclasses.replace(config, epochs=1)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    optimizer = make_optimizer(config, model.parameters())
    splits = data.training_splits(config.holdout)
    size = min(config.batch_size, len(splits.train))
    images = splits.train.images[:size].to(device)
    labels = splits.train.labels[:size].to(device)

    def step() -> None:
        train_step(model, optimizer, images, labels, config.label_smoothing)

    def window() -> float:
        """Seconds per step over at least MIN_STEPS steps and seconds / WINDOWS."""
        steps, start = 0, time.perf_counter()
        while steps < MIN_STEPS or time.perf_counter() - start < seconds / WINDOWS:
            step()
            steps += 1
        _sync(device)
        return (time.perf_counter() - start) / steps

    model.train()
    for _ in range(WARMUP_STEPS):
        step()
    per_step = statistics.median(window() for _ in range(WINDOWS))
    batch = min(getattr(model, "eval_batch", EVAL_BATCH), len(splits.test))
    evaluated = splits.test.images[:batch].to(device)
    predict(model, evaluated)  # warm-up
    start = time.perf_counter()
    predict(model, evaluated)
    _sync(device)
    per_image = (time.perf_counter() - start) / batch
    n_batches = max(len(splits.train) // size, 1)
    return n_batches * per_step + (len(splits.val) + len(splits.test)) * per_image


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
