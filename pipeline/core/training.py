"""The training loop: resident tensors, seeded permutations, per-epoch metrics, callbacks.

`train(config, data)` builds the model, trains it for `config.epochs`, and after every epoch
computes train / val / test loss and accuracy, then calls each callback with an `EpochEnd`.
With `config.ema` the model evaluated, passed to callbacks and returned is the moving average of
the trained weights.
It returns a `TrainResult` (model and history). It knows nothing of MLflow or Optuna: tracking
and pruning are callbacks, and a callback may raise to stop training (Optuna's TrialPruned).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pipeline.core import interrupt
from pipeline.core.augment import cutout, flip_and_shift
from pipeline.core.config import TrainConfig
from pipeline.core.data import FashionMNIST, Split
from pipeline.core.errors import UserError
from pipeline.core.metrics import (
    EPOCH_TIME,
    TEST_ACC,
    TEST_LOSS,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
)
from pipeline.core.models import build_model
from pipeline.core.optimizers import make_optimizer, make_schedule
from pipeline.core.whitening import init_whitening

# Inference batch, unless the model names its own (`eval_batch`, as the CNNs do). Measured on 2
# cores (base FCN, 20k images): 1024 takes 155 ms, 4096 298 ms, 512 182 ms: the activations of
# 1024 images stay in cache, those of 4096 do not.
EVAL_BATCH = 1024


class Diverged(UserError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(
            f"training diverged at epoch {epoch}: {TRAIN_LOSS} is {loss}; "
            "lower --lr or add batch norm"
        )
        self.epoch, self.loss = epoch, loss


@dataclass(frozen=True)
class EpochEnd:
    """What a callback sees after each epoch (1-based `epoch`)."""

    epoch: int
    metrics: dict[str, float]
    model: nn.Module


Callback = Callable[[EpochEnd], None]


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    train_time_s: float = 0.0  # wall time of the whole call, callbacks included

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1]


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_workers() -> int:
    """`replicate`'s trainings at once, in separate processes: 1 on a GPU; on a CPU of 2 or more
    threads, 2 of half the threads each (on 2 cores two 1-thread processes did 1.36x the base
    FCN's work of one 2-thread process, 1.13x the study CNN's; the full report took 56 instead
    of 74 minutes). `tune` stays at 1: `python -m bench`, section tune, measured 89 trials/hour
    with 2 processes against 92 with one."""
    if pick_device().type != "cpu":
        return 1
    return 2 if torch.get_num_threads() >= 2 else 1


def share_threads(workers: int) -> int:
    """Each process's share of this process's threads when `workers` train at once."""
    return max(1, torch.get_num_threads() // workers)


def autocast(device: torch.device) -> torch.autocast:
    """bfloat16 matmuls and convolutions on CUDA (same exponent range as float32: no loss
    scaling needed); float32 everywhere else, where CPUs gain little or nothing from bf16."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Float32 logits for `images`, in eval mode (dropout off, batch norm on running
    statistics), `batch_size` at a time (default: the model's `eval_batch`, else EVAL_BATCH)."""
    batch_size = batch_size or int(getattr(model, "eval_batch", EVAL_BATCH))
    model.eval()
    with autocast(images.device):
        return torch.cat(
            [model(images[i : i + batch_size]).float() for i in range(0, len(images), batch_size)]
        )


def _loss_and_correct(model: nn.Module, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    logits = predict(model, split.images)
    loss = F.cross_entropy(logits, split.labels)
    return loss, (logits.argmax(1) == split.labels).sum()


def train(
    config: TrainConfig,
    data: FashionMNIST,
    callbacks: Sequence[Callback] = (),
    device: torch.device | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train one model; `progress=None` shows a bar only when stderr is a terminal."""
    start = time.perf_counter()
    device = device or pick_device()
    torch.manual_seed(config.seed)  # weights and dropout masks
    model = build_model(config).to(device)
    data = data.training_splits(config.holdout).to(device)
    if config.whiten and config.model != "fcn":
        init_whitening(model, data.train.images)
    optimizer = make_optimizer(config, model.parameters())
    order = torch.Generator(device=device).manual_seed(config.seed)  # batch order, separately
    # Drop the last partial batch (a fresh permutation each epoch still shows every image):
    # all steps then have the same size, and batch norm never sees a batch of one.
    n_batches = max(len(data.train) // config.batch_size, 1)
    schedule = make_schedule(config, optimizer, n_batches)
    # The average copies the model at its first update; buffers too, so its batch-norm
    # statistics belong to its own weights rather than to the last raw step's.
    average = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
        if config.ema
        else None
    )
    evaluated = average.module if average else model
    result = TrainResult(evaluated)

    from tqdm import tqdm  # a progress bar on terminals, silent in CI and under MLflow's capture

    show = sys.stderr.isatty() if progress is None else progress
    epochs = tqdm(
        range(1, config.epochs + 1),
        desc=f"{config.model} {config.optimizer}",
        unit="epoch",
        disable=not show,
        leave=False,
    )
    for epoch in epochs:
        t0 = time.perf_counter()
        loss_sum, correct = _train_epoch(
            config, model, data.train, optimizer, schedule, order, n_batches, average
        )
        seen = min(len(data.train), n_batches * config.batch_size)
        metrics = _epoch_metrics(evaluated, data, loss_sum, correct, seen)
        metrics[EPOCH_TIME] = time.perf_counter() - t0
        result.history.append(metrics)
        if not math.isfinite(metrics[TRAIN_LOSS]):
            raise Diverged(epoch, metrics[TRAIN_LOSS])
        shown = VAL_ACC if VAL_ACC in metrics else TEST_ACC
        epochs.set_postfix({shown: f"{metrics[shown]:.4f}", "loss": f"{metrics[TRAIN_LOSS]:.4f}"})
        for callback in callbacks:
            callback(EpochEnd(epoch, metrics, evaluated))
    result.train_time_s = time.perf_counter() - start
    return result


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    label_smoothing: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on the batch (x, y); its logits and loss. Also what
    core/timing.py times."""
    with autocast(x.device):
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits, loss


def _train_epoch(
    config: TrainConfig,
    model: nn.Module,
    train_split: Split,
    optimizer: torch.optim.Optimizer,
    schedule,
    order: torch.Generator,
    n_batches: int,
    average: AveragedModel | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over a fresh permutation; the summed loss and the correct count, on the device
    (no .item() sync per batch). `average`, if any, is updated after every step."""
    model.train()
    device = train_split.images.device
    perm = torch.randperm(len(train_split), device=device, generator=order)
    # One gather per epoch, then each batch is a contiguous slice (no per-batch indexing).
    # index_select: 30 ms for the 50k images on 2 cores, where images[perm] took 65 ms.
    images = train_split.images.index_select(0, perm)
    labels = train_split.labels.index_select(0, perm)
    if config.augment:
        images = cutout(flip_and_shift(images, order, config.max_shift), order, config.cutout)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    size = config.batch_size
    for b in range(n_batches):
        x, y = images[b * size : (b + 1) * size], labels[b * size : (b + 1) * size]
        logits, loss = train_step(model, optimizer, x, y, config.label_smoothing)
        schedule.step()
        if average is not None:
            average.update_parameters(model)
        interrupt.check()  # a stop request swallowed, or held back out of a database write
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
    return loss_sum, correct


def _epoch_metrics(
    model: nn.Module, data: FashionMNIST, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int
) -> dict[str, float]:
    """Train figures of the epoch just run, then val (unless no images are held out) and test
    after it, with one sync. Accuracies are divided here, in float64, from exact counts: 8623 /
    10000 reads 0.8623 in the MLflow UI and optuna-dashboard, not float32's 0.8622999787."""
    splits = [(VAL_LOSS, VAL_ACC, data.val)] if len(data.val) else []
    splits.append((TEST_LOSS, TEST_ACC, data.test))
    sums = [loss_sum / seen, correct.float()]
    for *_, split in splits:
        loss, right = _loss_and_correct(model, split)
        sums += [loss, right.float()]
    values = iter(torch.stack(sums).tolist())
    metrics = {TRAIN_LOSS: next(values), TRAIN_ACC: next(values) / seen}
    for loss_name, acc_name, split in splits:
        metrics[loss_name] = next(values)
        metrics[acc_name] = next(values) / len(split)
    return metrics
