"""`tune`'s settings: one frozen object built once at the edge (the CLI) and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.tuning.space import SearchSpace
from pipeline.tuning.workers import shares


@dataclass(frozen=True)
class TuneSettings:
    model: str
    space: SearchSpace
    study_name: str
    storage: str
    n_trials: int | None
    timeout: float | None  # seconds; checked between trials
    epochs: int
    seed: int
    pruner: str = "median"
    total_trials: int | None = None  # study-wide cap, shared by all workers (RDB storages)
    heartbeat: int | None = 60  # seconds between a running trial's heartbeats (RDB storages)
    grace_period: int = 180  # seconds without a heartbeat after which a trial's worker is dead
    workers: int = 1  # processes of this call, sharing n_trials (pipeline/helpers.py)
    # A `tune --workers` helper: its trials nest under this run of the main worker; it logs no
    # study summary and registers nothing.
    helper_of: str | None = None

    @property
    def own_trials(self) -> int | None:
        """This process's share of n_trials (a helper is started with its own share)."""
        return None if self.n_trials is None else shares(self.n_trials, self.workers)[0]

    def params(self) -> dict[str, object]:
        """The parameters the parent run logs (the storage with its password masked)."""
        from pipeline.tuning.storage import mask_password

        return {"model": self.model, "space": str(self.space.path),
                "study_name": self.study_name, "storage": mask_password(self.storage),
                "n_trials": self.n_trials, "timeout": self.timeout, "epochs": self.epochs,
                "seed": self.seed, "pruner": self.pruner, "total_trials": self.total_trials,
                "heartbeat": self.heartbeat, "grace_period": self.grace_period,
                "workers": self.workers}
