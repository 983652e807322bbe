"""What the report is made from: every seed's run, the tuned champions, and their JSON form
(results.json, from which `--from-results` rebuilds the report); the figures read from them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from pipeline.core import files
from pipeline.core.data import CLASSES
from pipeline.core.errors import UserError, first_line
from pipeline.core.metrics import EPOCH_METRICS, TRAIN_LOSS, TRAIN_TIME, VAL_LOSS
from pipeline.core.stats import Spread, per_class
from pipeline.replication.experiments import VARIANTS, variant_keys


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


class ResultsError(ValueError):
    """A results.json that `from_json` cannot rebuild a report from; says what is wrong where."""


class _Strict(BaseModel):
    # "3" is not 3 and true is not 1: a results.json we did not write is refused, not guessed
    model_config = ConfigDict(strict=True)


def _model(cls: type, names: Sequence[str], **more: Any) -> type[BaseModel]:
    """A strict pydantic model of the fields `names` of the dataclass `cls`, typed as `cls`
    types them, and of `more` (name=(type, default))."""
    hints = get_type_hints(cls)
    # made at run time from the dataclass's fields: mypy cannot follow create_model's kwargs
    return create_model(  # type: ignore[call-overload]
        f"_{cls.__name__}", __base__=_Strict, **{n: (hints[n], ...) for n in names}, **more
    )


_Epoch = create_model(  # type: ignore[call-overload]  # fields from EPOCH_METRICS
    "_Epoch", __base__=_Strict, **{m: (float, ...) for m in EPOCH_METRICS}
)
_Row = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=len(CLASSES))]
_Confusion = Annotated[
    list[Annotated[_Row, Field(max_length=len(CLASSES))]],
    Field(min_length=len(CLASSES), max_length=len(CLASSES)),
]
_Run = _model(
    SeedRun,
    ("variant", "seed", "run_id", "train_time_s"),
    history=(Annotated[list[_Epoch], Field(min_length=1)], ...),  # type: ignore[valid-type]
    test_confusion_counts=(_Confusion, ...),
)
_Tuned = _model(TunedRow, [f.name for f in dataclasses.fields(TunedRow)])


class _Trial(_Strict):  # what report/frontier.py reads of a frontier.json trial
    number: int
    model: str
    epochs: int | None
    val_acc: float
    train_time_s: float


class _Frontier(_Strict):
    study_name: str
    trials: list[_Trial]


_Results = _model(
    ReportInput,
    ("seeds", "epochs", "cnn_epochs", "quick", "train_size", "machine"),
    wall_time_s=(float, ...),
    # a table's number: a string in JSON, an int in `to_json`'s dict
    table_run_ids=(dict[Annotated[str, Field(pattern=r"^[0-9]{1,9}$")] | int, str], ...),
    runs=(list[_Run], ...),  # type: ignore[valid-type]  # models made at run time
    tuned=(list[_Tuned], ...),  # type: ignore[valid-type]
    frontier=(_Frontier | None, None),  # absent from reports before the frontier
)


def check_json(d: object) -> None:
    """Raise ResultsError naming the first thing in `d` that `from_json` and the report cannot
    use: a missing key, a wrong type, a confusion matrix that is not 10x10 counts, an empty
    history, a variant the study does not have, a variant without runs."""
    try:
        _Results.model_validate(d)
    except ValidationError as e:
        first = e.errors()[0]
        where = "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"] if p != "[key]"
        )
        # pydantic names our private classes there: say what the JSON should hold instead
        what = "should be an object" if first["type"] == "model_type" else first["msg"].lower()
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ResultsError(f"{where.lstrip('.') or 'the file'}: {what}{more}") from None
    assert isinstance(d, dict)
    for i, run in enumerate(d["runs"]):
        if run["variant"] not in VARIANTS:
            raise ResultsError(
                f"runs[{i}].variant: {run['variant'][:40]!r} is not a variant of the study "
                "(pipeline/replication/experiments.py)"
            )
    missing = [k for k in variant_keys() if k not in {r["variant"] for r in d["runs"]}]
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise ResultsError(f"runs: no run of {shown}; the report needs every variant")


def from_json(d: dict) -> ReportInput:
    """The inverse of `to_json`; ResultsError (see `check_json`) for what it cannot rebuild."""
    check_json(d)
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
    )


def read_results(path: Path) -> ReportInput:
    """`--from-results PATH`: the report input of an earlier call's results.json, or UserError
    in one line. Only a regular file is read (a FIFO would wait for a writer for good)."""
    hint = "pass the results.json of a replicate report"
    if not path.is_file():
        what = files.kind(path)
        raise UserError(
            f"--from-results {path}: {'no such file' if what == 'missing' else 'is ' + what}; "
            f"{hint}"
        )
    try:
        d = json.loads(path.read_text())
    except OSError as e:
        raise UserError(
            f"--from-results {path}: cannot read it ({e.strerror or e}); {hint}"
        ) from None
    except (ValueError, RecursionError) as e:  # not UTF-8, truncated, nested past the stack
        raise UserError(
            f"--from-results {path}: not JSON ({first_line(e)[:120]}); {hint}"
        ) from None
    try:
        return from_json(d)
    except ResultsError as e:
        raise UserError(
            f"--from-results {path}: not a replicate results.json: {e}; {hint}"
        ) from None


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
