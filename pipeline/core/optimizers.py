"""The optimizer and the per-step learning-rate schedule a TrainConfig names (`--optimizer`,
`--lr`, `--weight-decay`, `--schedule`), for the training loop (core/training.py) and the
epoch timing (core/timing.py).
"""

from __future__ import annotations

import math

import torch

from pipeline.core.config import TrainConfig


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    # fused: one kernel for all parameters per step (PyTorch has it on CPU and CUDA for SGD,
    # Adam and AdamW), instead of a loop of elementwise ops per parameter tensor.
    lr, wd = config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, fused=True)
    if config.optimizer == "momentum":
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd, fused=True
        )
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=True)


def make_schedule(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step learning-rate factor: constant; or linear warm-up for one epoch (large early
    steps of adaptive optimizers are the usual divergence) then cosine decay to zero; or one
    cycle: a linear rise to the peak over 20% of the steps, then a linear fall to zero."""
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        peak = max(round(0.2 * total), 1)

        def onecycle(step: int) -> float:
            if step < peak:
                return (step + 1) / peak
            return max(total - step, 0) / max(total - peak, 1)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, onecycle)
    warmup = steps_per_epoch if config.epochs > 1 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
