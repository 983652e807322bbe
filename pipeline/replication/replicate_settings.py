"""`replicate`'s options as typed (`ReplicateOptions`, each defined once; 0 means the default)
and the settings they resolve to (`ReplicateSettings`), built once at the edge (the CLI) and
passed down. Imports no torch until the settings are resolved: `--help` stays instant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core import options
from pipeline.core.config import MAX_EPOCHS, TrainConfig, data_dir
from pipeline.core.recipes import CNN
from pipeline.replication.experiments import VARIANTS
from pipeline.tuning.tune_settings import MAX_WORKERS

QUICK_EPOCHS, QUICK_CNN_EPOCHS, QUICK_SEEDS, QUICK_TRAIN_SIZE = 2, 1, 2, 10_000
SEEDS = 3
MAX_SEEDS = 100  # each seed trains every variant again: 100 is days of CPU time already


@dataclass(frozen=True)
class ReplicateOptions:
    """`replicate` as typed on the command line."""

    seeds: int = options.integer(
        0,
        "Seeds per variant.",
        low=0,
        high=MAX_SEEDS,
        zero=f"{SEEDS}, or {QUICK_SEEDS} with --quick",
    )
    epochs: int = options.integer(
        0,
        "FCN epochs.",
        low=0,
        high=MAX_EPOCHS,
        zero=f"the study's {TrainConfig().epochs}, or {QUICK_EPOCHS} with --quick",
    )
    cnn_epochs: int = options.integer(
        0,
        "CNN epochs.",
        low=0,
        high=MAX_EPOCHS,
        zero=f"the study's {CNN.epochs}, or {QUICK_CNN_EPOCHS} with --quick",
    )
    workers: int = options.integer(
        0,
        "Trainings at once, in separate processes sharing the threads.",
        low=0,
        high=MAX_WORKERS,
        zero="2 on a CPU of 2+ threads, 1 on a GPU",
        log="train_processes",
    )
    quick: bool = options.flag(
        f"A glance in minutes: {QUICK_TRAIN_SIZE:,} training images, few epochs, "
        f"{QUICK_SEEDS} seeds."
    )
    out: Path = options.path("report", "Folder of the report (replaced).", log=False)
    from_results: str = options.text(
        "", "Only rebuild the report from this results.json of an earlier call.", log=False
    )
    data_dir: Path = data_dir()

    def __post_init__(self):
        options.check(self)

    def resolve(self) -> ReplicateSettings:
        """The settings: 0 means the study's epochs and 3 seeds, or the quick mode's; workers:
        see default_workers."""
        from pipeline.core.training import default_workers  # torch

        quick = self.quick
        return ReplicateSettings(
            seeds=self.seeds or (QUICK_SEEDS if quick else SEEDS),
            epochs=self.epochs or (QUICK_EPOCHS if quick else TrainConfig().epochs),
            cnn_epochs=self.cnn_epochs or (QUICK_CNN_EPOCHS if quick else CNN.epochs),
            quick=quick,
            train_size=QUICK_TRAIN_SIZE if quick else None,
            out_dir=self.out,
            workers=self.workers or default_workers(),
            data_dir=self.data_dir,
        )


@dataclass(frozen=True)
class ReplicateSettings:
    seeds: int = SEEDS
    epochs: int = 50  # FCN epochs (the study's)
    cnn_epochs: int = 10  # the study's CNN epochs
    quick: bool = False
    train_size: int | None = None  # None: all 50,000 training images
    out_dir: Path = Path("report")
    workers: int = 1  # training processes
    data_dir: Path = Path("data")

    @classmethod
    def build(cls, **typed: Any) -> ReplicateSettings:
        """The settings from options as typed (ReplicateOptions' names; 0: the default)."""
        return ReplicateOptions(**typed).resolve()

    @property
    def threads(self) -> int:
        from pipeline.core.training import share_threads  # torch

        return share_threads(self.workers)

    def config(self, key: str, seed: int) -> TrainConfig:
        base = VARIANTS[key].config
        epochs = self.cnn_epochs if base.model != "fcn" else self.epochs
        return dataclasses.replace(base, epochs=epochs, seed=seed)

    def params(self) -> dict[str, object]:
        """The parameters the top-level run logs: ReplicateOptions' (resolved) and the threads
        each training process gets."""
        return {**options.params(self, ReplicateOptions), "threads_per_process": self.threads}
