"""What a study shows once its workers have ended: the parent run's summary, and a few lines
for the terminal.

`log_study` logs, on the worker's parent run, trial counts, all trials as CSV, Optuna's plots,
the best trial's params and accuracies, how the sampler's own trials fared against the search
space's start points, then registers the champion (tuning/registry/champion.py).
"""

from __future__ import annotations

import bisect
import math
import tempfile
from pathlib import Path

import mlflow
import optuna
from optuna.trial import TrialState

from pipeline.core.data import FashionMNIST
from pipeline.core.metrics import TEST_ACC, VAL_ACC
from pipeline.tuning import pareto, study_figures
from pipeline.tuning.attrs import RETRY_OF_ATTR, completed_value
from pipeline.tuning.registry import champion
from pipeline.tuning.search.sampler import N_STARTUP_TRIALS
from pipeline.tuning.tune_settings import TuneSettings

STATES = ("COMPLETE", "PRUNED", "FAIL")
# Counted only when there are some: a trial another worker still runs, one whose dead worker is
# not found yet (the next `tune` retries it), one queued.
UNFINISHED = ("RUNNING", "WAITING")


def log_study(study: optuna.Study, settings: TuneSettings, data: FashionMNIST) -> None:
    """Summary of the whole study (all workers, all calls) on the active parent run."""
    states = [t.state.name for t in study.trials]
    counted = STATES + tuple(s for s in UNFINISHED if s in states)
    mlflow.log_metrics({f"trials_{s.lower()}": states.count(s) for s in counted})
    kinds = list(sampled_by(study).values())
    mlflow.log_metrics({f"trials_{kind}": kinds.count(kind) for kind in ("start", "random", "tpe")})
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "trials.csv"
        study.trials_dataframe().to_csv(csv, index=False)
        mlflow.log_artifact(str(csv))
    if len(study.directions) > 1:  # the frontier: its figure, no single best (tuning/pareto.py)
        pareto.log_front(study)
        return
    for name, fig in study_figures.figures(study).items():
        mlflow.log_figure(fig, f"optuna/{name}.png")
        study_figures.close(fig)
    if "COMPLETE" not in states:
        print("no trial completed: nothing to register")
        return
    best = study.best_trial
    mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
    mlflow.log_metrics({f"best_{VAL_ACC}": completed_value(best), "best_trial_number": best.number})
    if TEST_ACC in best.user_attrs:
        mlflow.log_metric(f"best_{TEST_ACC}", best.user_attrs[TEST_ACC])
    start, own = best_of_each_kind(study)
    mlflow.log_metrics(
        {
            f"best_{kind}_{VAL_ACC}": completed_value(t)
            for kind, t in (("start", start), ("sampled", own))
            if t
        }
    )
    champion.register_champion(study, settings, data)


def summary(study: optuna.Study, settings: TuneSettings | None = None) -> str:
    """A few lines for the terminal: trial counts, best trial, its accuracies, how the
    sampler's own trials fared, and a line if the search never started or nothing was
    pruned."""
    states = [t.state.name for t in study.trials]
    counted = STATES + tuple(s for s in UNFINISHED if s in states)
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in counted)
    lines = [f"study {study.study_name}: {len(states)} trials ({counts})"]
    if len(study.directions) > 1:  # the frontier (tuning/pareto.py)
        return "\n".join(lines + pareto.summary(study))
    if "COMPLETE" in states:
        best = study.best_trial
        lines.append(
            f"best: trial {best.number}, val_acc {best.value:.4f}, test_acc "
            f"{best.user_attrs.get(TEST_ACC, math.nan):.4f}, params {best.params}"
        )
        lines += search_vs_start(study)
    if settings is not None:
        lines += search_warnings(study, settings)
    return "\n".join(lines)


def sampled_by(study: optuna.Study) -> dict[int, str]:
    """Who chose each trial's params, by trial number: "start" (a start point, or a retry of
    one), "random" (TPE's start-up: fewer than N_STARTUP_TRIALS trials had finished when it
    began) or "tpe"."""
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    finished = sorted(
        t.datetime_complete
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete is not None
    )
    kinds = {}
    for t in trials:
        origin = by_number.get(t.user_attrs.get(RETRY_OF_ATTR, t.number), t)
        if is_start_point(t, by_number):
            kinds[t.number] = "start"
        elif origin.datetime_start is None:
            kinds[t.number] = "random"  # queued, never begun
        else:
            before = bisect.bisect_left(finished, origin.datetime_start)
            kinds[t.number] = "tpe" if before >= N_STARTUP_TRIALS else "random"
    return kinds


def search_warnings(study: optuna.Study, settings: TuneSettings) -> list[str]:
    """A line when TPE never chose a trial, and one when the pruner stopped none, each with
    what buys a real search."""
    trials = study.get_trials(deepcopy=False)
    if not trials:
        return []
    more = (
        f"give the study more time (--timeout {2 * settings.timeout:g})"
        if settings.timeout
        else "add trials (--n-trials)"
    )
    if settings.epochs > 1:
        more += f" or shorter trials (--epochs {settings.epochs // 2})"
    lines = []
    if "tpe" not in sampled_by(study).values():
        lines.append(
            f"note: the search never started: all {len(trials)} trials were start "
            "points or random start-up trials (TPE takes over once "
            f"{N_STARTUP_TRIALS} have finished); for a real search {more}"
        )
    if settings.pruner != "none" and not any(t.state == TrialState.PRUNED for t in trials):
        lines.append(
            f"note: the pruner stopped no trial: all {len(trials)} ran their "
            f"{settings.epochs} epochs; {more}"
        )
    return lines


def is_start_point(
    trial: optuna.trial.FrozenTrial, by_number: dict[int, optuna.trial.FrozenTrial]
) -> bool:
    """Queued from the search space's `enqueue` (Optuna keeps its params as `fixed_params`);
    a dead worker's trial run again counts as what it retries."""
    origin = by_number.get(trial.user_attrs.get(RETRY_OF_ATTR, trial.number), trial)
    return "fixed_params" in origin.system_attrs


def best_of_each_kind(study: optuna.Study) -> tuple[optuna.trial.FrozenTrial | None, ...]:
    """The best completed start point and the best completed trial the sampler chose."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))

    def best(start: bool) -> optuna.trial.FrozenTrial | None:
        return max(
            (t for t in complete if is_start_point(t, by_number) == start),
            key=completed_value,
            default=None,
        )

    return best(True), best(False)


def search_vs_start(study: optuna.Study) -> list[str]:
    """One line: did the sampler's own trials reach the best start point?"""
    start, own = best_of_each_kind(study)
    if start is None or own is None:
        return []
    gap = 100 * (completed_value(own) - completed_value(start))
    verdict = (
        f"{gap:.2f} points ahead of"
        if gap > 0
        else "level with"
        if gap == 0
        else f"{-gap:.2f} points behind"
    )
    return [
        f"search vs start points: the sampler's best trial {own.number} (val_acc "
        f"{own.value:.4f}) is {verdict} the best start point, trial {start.number} "
        f"({start.value:.4f})"
    ]
