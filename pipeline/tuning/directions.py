"""What a study optimizes: validation accuracy alone, or the accuracy-vs-time frontier.

`tune --objectives val_acc` (the default) maximizes val_acc. `--objectives val_acc,train_time_s`
also minimizes each trial's training time (the wall seconds `train` measures: every epoch with
its val and test evaluation), so the study's result is a Pareto front rather than one best
trial (tuning/pareto.py). Optuna cannot prune a multi-objective study (`Trial.report` is
single-objective), so a frontier's budget is bounded by --n-trials / --timeout / --total-trials
and by the epochs cap (--epochs, or each family's range in the space), never by a pruner.

Standard library only: `tune --help` and its argument errors stay instant.
"""

from __future__ import annotations

from typing import Literal

from pipeline.core.errors import ConfigError
from pipeline.core.metrics import TRAIN_TIME, VAL_ACC

FRONTIER = f"{VAL_ACC},{TRAIN_TIME}"
OBJECTIVES = (VAL_ACC, FRONTIER)
Direction = Literal["maximize", "minimize"]  # as optuna.create_study takes them
DIRECTION: dict[str, Direction] = {VAL_ACC: "maximize", TRAIN_TIME: "minimize"}
FRONTIER_SPACE = "frontier.yaml"
PRUNERS = ("auto", "halving", "percentile", "median", "hyperband", "none")


def directions(objectives: str) -> list[Direction]:
    return [DIRECTION[name] for name in objectives.split(",")]


def resolve_pruner(pruner: str, objectives: str) -> str:
    """`auto`: halving for val_acc alone, none for the frontier; a pruner asked of the
    frontier is refused with what bounds its budget instead."""
    if objectives != FRONTIER:
        return "halving" if pruner == "auto" else pruner
    if pruner not in ("auto", "none"):
        raise ConfigError(
            f"pruner: {pruner} cannot stop trials of a frontier study (Optuna "
            "prunes no multi-objective study); its budget is --n-trials, "
            "--timeout, --total-trials and the epochs cap --epochs: leave "
            "--pruner auto or none"
        )
    return "none"
