"""Will a model fit in memory? Its estimate, refused before any run is made when it cannot.

`estimate(config)` builds the network on PyTorch's "meta" device (shapes, no storage: a
10-billion-parameter FCN costs nothing) and runs one training forward pass there, so parameters
and activations are counted from the real modules, not from a formula that could drift from
them. A training step holds, in float32: the weights, their gradients, the optimizer's state
(momentum: one copy, RMSprop one, Adam two), the moving average's copy (`--ema`), and the
activations of one batch kept for the backward pass, counted twice (the backward pass holds
their gradients while it runs).

`check_fits(config)` compares that with the memory this process may still take: RAM available
(psutil) or, within a container or systemd slice, what its cgroup's limit leaves, whichever is
less; on CUDA, the GPU's free memory. A model that cannot fit is one line (UserError) with the
estimate and the limit, before any MLflow run exists: without it, the run was made, then the
allocator raised deep in training or the OOM killer ended the process, its run left RUNNING.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch
from torch import nn

from pipeline.core.config import TrainConfig
from pipeline.core.errors import UserError
from pipeline.core.models import build_model

FLOAT = 4  # bytes: weights, gradients, optimizer state and activations are float32
OPTIMIZER_COPIES = {"sgd": 0, "momentum": 1, "rmsprop": 1, "adam": 2, "adamw": 2}


@dataclass(frozen=True)
class Estimate:
    """Bytes a training of one config needs at its peak, by part."""

    weights: int
    gradients: int
    optimizer: int
    average: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.average + self.activations

    def __str__(self) -> str:
        parts = [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimizer state", self.optimizer),
            ("average", self.average),
            ("activations", self.activations),
        ]
        return f"{size(self.total)} ({', '.join(f'{n} {size(b)}' for n, b in parts if b)})"


def layers(hidden: tuple[int, ...]) -> str:
    """'300,200'; '16384x40' for equal widths; '400 layers of up to 1024' when long."""
    if len(hidden) > 1 and len(set(hidden)) == 1:
        return f"{hidden[0]}x{len(hidden)}"
    if len(hidden) > 6:
        return f"{len(hidden)} layers of up to {max(hidden)}"
    return ",".join(map(str, hidden))


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:,.0f} TB"


@functools.lru_cache(maxsize=64)
def _shape(model: str, hidden: tuple[int, ...], dropout: bool, batch_norm: bool, head: int):
    """(parameters, activation floats per image) of the network these fields build (the only
    ones build_model's sizes depend on; tta_shift changes evaluation only)."""
    config = TrainConfig(
        model=model,
        hidden=hidden or (300, 200),  # the CNNs ignore it
        dropout=0.5 if dropout else 0.0,
        batch_norm=batch_norm,
        head_hidden=head,
    )
    with torch.device("meta"):
        network = build_model(config)
    outputs: list[int] = []

    def count(module: nn.Module, inputs, output: torch.Tensor) -> None:
        if not getattr(module, "inplace", False):  # an in-place ReLU reuses its input
            outputs.append(output.numel())

    for module in network.modules():
        if not list(module.children()):
            module.register_forward_hook(count)
    batch = 2  # batch norm refuses a training batch of one
    network.train()(torch.empty(batch, 1, 28, 28, device="meta"))
    return sum(p.numel() for p in network.parameters()), sum(outputs) // batch


def estimate(config: TrainConfig) -> Estimate:
    """The peak memory of training `config`, by part."""
    params, per_image = _shape(
        config.model,
        config.hidden if config.model == "fcn" else (),
        config.dropout > 0,
        config.batch_norm,
        config.head_hidden if config.model == "fast_cnn" else 0,
    )
    weights = FLOAT * params
    return Estimate(
        weights=weights,
        gradients=weights,
        optimizer=OPTIMIZER_COPIES[config.optimizer] * weights,
        average=weights if config.ema else 0,
        activations=2 * FLOAT * per_image * config.batch_size,
    )


def available(device: torch.device) -> tuple[int, str]:
    """Bytes this process may still allocate on `device`, and what says so."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free on {torch.cuda.get_device_name(device)}"
    ram = psutil.virtual_memory().available
    limit = cgroup_room()
    if limit is not None and limit < ram:
        return limit, "left under this process's cgroup memory limit"
    return ram, "of RAM available"


def cgroup_room(
    proc: Path = Path("/proc/self/cgroup"), mounts: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """What the memory limit of this process's cgroup (v2 or v1) leaves, page cache that can
    be reclaimed counted as free; None without a limit. psutil reports the machine's RAM,
    while the OOM killer acts at a container's limit."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            files = ("", "memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # v1
            files = (
                "memory",
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file",
            )
        else:
            continue
        mount, limit_file, usage_file, reclaimable = files
        root = mounts / mount
        # Inside a container's cgroup namespace the mount is the cgroup itself.
        for folder in (root / path.lstrip("/"), root):
            try:
                limit = (folder / limit_file).read_text().strip()
                usage = int((folder / usage_file).read_text())
                stat = (folder / "memory.stat").read_text().split()
            except (OSError, ValueError):
                continue
            if not limit.isdigit() or int(limit) >= 2**60:  # "max", or v1's "no limit"
                return None
            cache = dict(zip(stat[::2], stat[1::2])).get(reclaimable, "0")
            return max(int(limit) - usage + int(cache), 0)
    return None


def check_fits(
    config: TrainConfig, device: torch.device, what: str, fix: str, share: int = 1
) -> Estimate:
    """The estimate, or one line (UserError) naming `what` and how to `fix` it when it needs
    more than this device has for each of `share` processes training at once."""
    need = estimate(config)
    free, where = available(device)
    each = f" for each of {share} workers" if share > 1 else ""
    if need.total > free // share:
        raise UserError(
            f"{what} cannot fit in memory: training it needs about {need}, more than the "
            f"{size(free // share)} {where}{each}; {fix}"
        )
    return need
