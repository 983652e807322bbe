"""`replicate`'s settings: one frozen object built once at the edge (the CLI) and passed down."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.config import ConfigError, TrainConfig
from pipeline.core.training import default_workers, share_threads
from pipeline.replication.experiments import VARIANTS

QUICK_EPOCHS, QUICK_CNN_EPOCHS, QUICK_SEEDS, QUICK_TRAIN_SIZE = 2, 1, 2, 10_000


@dataclass(frozen=True)
class ReplicateSettings:
    seeds: int = 3
    epochs: int = 50       # FCN epochs (the study's)
    cnn_epochs: int = 10   # the study's CNN epochs
    quick: bool = False
    train_size: int | None = None  # None: all 50,000 training images
    out_dir: Path = Path("report")
    workers: int = 1       # training processes
    data_dir: Path = Path("data")

    @classmethod
    def build(cls, seeds: int = 0, epochs: int = 0, cnn_epochs: int = 0, quick: bool = False,
              out_dir: Path = Path("report"), workers: int = 0,
              data_dir: Path = Path("data")) -> ReplicateSettings:
        """0 means the default: the study's epochs and 3 seeds, or the quick mode's; workers:
        see default_workers."""
        for name, value in (("seeds", seeds), ("epochs", epochs), ("cnn_epochs", cnn_epochs),
                            ("workers", workers)):
            if value < 0:
                raise ConfigError(f"{name}: {value} must be >= 1 (or 0 for the default)")
        return cls(seeds=seeds or (QUICK_SEEDS if quick else 3),
                   epochs=epochs or (QUICK_EPOCHS if quick else 50),
                   cnn_epochs=cnn_epochs or (QUICK_CNN_EPOCHS if quick else 10), quick=quick,
                   train_size=QUICK_TRAIN_SIZE if quick else None, out_dir=out_dir,
                   workers=workers or default_workers(), data_dir=data_dir)

    @property
    def threads(self) -> int:
        return share_threads(self.workers)

    def config(self, key: str, seed: int) -> TrainConfig:
        base = VARIANTS[key].config
        epochs = self.cnn_epochs if base.model != "fcn" else self.epochs
        return dataclasses.replace(base, epochs=epochs, seed=seed)

    def params(self) -> dict[str, object]:
        """The parameters the top-level run logs."""
        return {"seeds": self.seeds, "epochs": self.epochs, "cnn_epochs": self.cnn_epochs,
                "quick": self.quick, "train_processes": self.workers,
                "threads_per_process": self.threads}
