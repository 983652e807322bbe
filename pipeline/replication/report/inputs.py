"""What the report is made from: every seed's run, the tuned champions, and their JSON form
(results.json, from which `--from-results` rebuilds the report); the figures read from them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.data import CLASSES
from pipeline.core.metrics import TRAIN_LOSS, TRAIN_TIME, VAL_LOSS
from pipeline.core.stats import Spread, per_class


@dataclass
class SeedRun:
    """One finished training of one variant with one seed."""

    variant: str
    seed: int
    run_id: str
    history: list[dict[str, float]]
    train_time_s: float
    confusion: np.ndarray  # test set, rows true class

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1]


@dataclass
class TunedRow:
    """A tuned champion from an Optuna study: one run, shown beside the seeds' means."""

    label: str
    model_uri: str
    run_id: str
    val_acc: float
    test_acc: float


@dataclass
class ReportInput:
    """Everything one report shows; `to_json` / `from_json` keep it whole."""

    runs: dict[str, list[SeedRun]]
    seeds: list[int]
    epochs: int
    cnn_epochs: int
    quick: bool
    train_size: int
    machine: str
    wall_s: float = 0.0
    tuned: list[TunedRow] = field(default_factory=list)
    table_run_ids: dict[int, str] = field(default_factory=dict)
    frontier: dict | None = None  # the latest frontier study's frontier.json (report/frontier.py)


def to_json(input: ReportInput) -> dict:
    """Every number of the report, with the MLflow run it comes from: `from_json` rebuilds the
    report from it without training again."""
    return {
        "seeds": input.seeds,
        "epochs": input.epochs,
        "cnn_epochs": input.cnn_epochs,
        "quick": input.quick,
        "train_size": input.train_size,
        "machine": input.machine,
        "wall_time_s": input.wall_s,
        "table_run_ids": input.table_run_ids,
        "runs": [
            {
                "variant": r.variant,
                "seed": r.seed,
                "run_id": r.run_id,
                TRAIN_TIME: r.train_time_s,
                "final": r.final,
                "history": r.history,
                "test_confusion_counts": r.confusion.tolist(),
            }
            for rs in input.runs.values()
            for r in rs
        ],
        "tuned": [dataclasses.asdict(t) for t in input.tuned],
        "frontier": input.frontier,
    }


def from_json(d: dict) -> ReportInput:
    """The inverse of `to_json`."""
    runs: dict[str, list[SeedRun]] = {}
    for r in d["runs"]:
        runs.setdefault(r["variant"], []).append(
            SeedRun(
                r["variant"],
                r["seed"],
                r["run_id"],
                r["history"],
                r[TRAIN_TIME],
                np.asarray(r["test_confusion_counts"]),
            )
        )
    return ReportInput(
        runs=runs,
        seeds=d["seeds"],
        epochs=d["epochs"],
        cnn_epochs=d["cnn_epochs"],
        quick=d["quick"],
        train_size=d["train_size"],
        machine=d["machine"],
        wall_s=d["wall_time_s"],
        tuned=[TunedRow(**t) for t in d["tuned"]],
        table_run_ids={int(k): v for k, v in d["table_run_ids"].items()},
        frontier=d.get("frontier"),
    )  # absent from reports before the frontier


def final_values(runs: Sequence[SeedRun], name: str) -> list[float]:
    """The final epoch's `name` of every run; "gap" is val loss - train loss, "time" the
    whole training's seconds."""
    if name == "gap":
        return [r.final[VAL_LOSS] - r.final[TRAIN_LOSS] for r in runs]
    if name == "time":
        return [r.train_time_s for r in runs]
    return [r.final[name] for r in runs]


def spread(runs: Sequence[SeedRun], name: str) -> Spread:
    """Mean, std, min and max over the seeds of `final_values`."""
    return Spread.of(final_values(runs, name))


def fmt(s: Spread, percent: bool = False, digits: int | None = None) -> str:
    """ "mean ± std [min, max]", or the one value of a single seed."""
    scale = 100 if percent else 1
    d = digits if digits is not None else (2 if percent else 4)
    if s.n == 1:
        return f"{scale * s.mean:.{d}f}"
    return (
        f"{scale * s.mean:.{d}f} ± {scale * s.std:.{d}f} "
        f"[{scale * s.min:.{d}f}, {scale * s.max:.{d}f}]"
    )


def per_class_accuracy(input: ReportInput, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std over seeds of every class's test accuracy (recall)."""
    recalls = np.array([per_class(r.confusion)["recall"] for r in input.runs[key]])
    return recalls.mean(0), recalls.std(0, ddof=1) if len(recalls) > 1 else np.zeros(len(CLASSES))
