"""Search spaces and samplers compared offline, on a surrogate of studies already measured.

    python -m bench.search_sim sqlite:///a/optuna.db sqlite:///b/optuna.db \\
        --space search_spaces/fcn.yaml --space search_spaces/fcn_study.yaml --runs 40

A default study takes 10 minutes a seed, and one seed says little: a start point's value moves
0.35 points between two seeds. This replays many studies in seconds instead. From the trials of
the given storages (every study in them, one model) it fits two random forests on the trials'
params: the final val_acc (a pruned trial's: its last value plus the median gain of finished
trials from that epoch) and the seconds per epoch. A simulated study queues the space's start
points and asks our sampler (`make_sampler`, as `tune` does) until `--budget` seconds of
simulated training have passed or `--n-trials` trials have started; a trial's value is the
forest's plus Gaussian noise of the seed-to-seed spread of the configurations measured under
several seeds (the start points); each trial reports a learning curve (its value less the
median gain to the last epoch) to `tune`'s default pruner (`make_pruner`), which stops it as
in a study and charges the epochs it ran. For each space it prints how far the
sampler's own best trial ended from the best start point (mean and std over the runs) and in
how many runs it reached or beat it.

A param that a space does not search is not an Optuna param of its trials: the simulation
hands the forest the space's value of it (fixed, or its recipe's), and measured studies must
come from spaces that search it. A
forest knows only what the trials measured: a space reaching far outside them is judged on
guesses. The simulation decides what to measure next; real studies decide what to claim.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import optuna
import typer

from pipeline.tuning.attrs import completed_value
from pipeline.tuning.directions import resolve_pruner
from pipeline.tuning.search.sampler import make_pruner, make_sampler
from pipeline.tuning.space import load_space
from pipeline.tuning.tune_settings import DEFAULT_EPOCHS, TuneOptions

TUNE = TuneOptions()  # tune's defaults


def measured_trials(storages: list[str]) -> list[optuna.trial.FrozenTrial]:
    """The finished and pruned trials, with their epochs, of every study in the storages."""
    trials = []
    for url in storages:
        for summary in optuna.get_all_study_summaries(url):
            study = optuna.load_study(study_name=summary.study_name, storage=url)
            trials += [
                t
                for t in study.trials
                if t.intermediate_values
                and t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            ]
    return trials


class Encoder:
    """Params as numbers: log10 for a log-scale float, one column per categorical choice (the
    choices of every space the trials came from), and a presence column for params a trial may
    lack (an FCN's third width, a param one of the spaces fixed)."""

    def __init__(self, trials: list[optuna.trial.FrozenTrial]):
        self.choices: dict[str, list] = {}  # categorical params
        self.log: dict[str, bool] = {}  # numeric params: log scale?
        for t in trials:
            for name, dist in t.distributions.items():
                if isinstance(dist, optuna.distributions.CategoricalDistribution):
                    known = self.choices.setdefault(name, [])
                    known += [c for c in dist.choices if c not in known]
                else:
                    self.log[name] = getattr(dist, "log", False)

    def __call__(self, params: dict) -> list[float]:
        row = [
            float(params.get(name) == c)
            for name in sorted(self.choices)
            for c in self.choices[name]
        ]
        for name in sorted(self.log):
            value = params.get(name)
            row += [
                float(value is not None),
                0.0 if value is None else math.log10(value) if self.log[name] else float(value),
            ]
        return row


class Surrogate:
    """A configuration's expected final val_acc and seconds per epoch, the median learning
    curve and the seed-to-seed noise, from the measured trials."""

    def __init__(self, trials: list[optuna.trial.FrozenTrial]):
        from sklearn.ensemble import RandomForestRegressor

        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        last = max(max(t.intermediate_values) for t in done)
        # epoch e -> median val_acc still to gain from e to the end
        ends = [(completed_value(t), t.intermediate_values) for t in done]
        self.gain = {
            e: float(np.median([end - seen.get(e, end) for end, seen in ends]))
            for e in range(1, last + 1)
        }
        finals = [
            completed_value(t)
            if t.state == optuna.trial.TrialState.COMPLETE
            else t.intermediate_values[max(t.intermediate_values)]
            + self.gain[min(max(t.intermediate_values), last)]
            for t in trials
        ]
        self.encode = Encoder(trials)
        x = np.array([self.encode(t.params) for t in trials])
        per_epoch = [max(seconds(t), 1e-3) / len(t.intermediate_values) for t in trials]
        forest = dict(n_estimators=300, min_samples_leaf=2, random_state=0)
        self.value = RandomForestRegressor(**forest).fit(x, finals)
        self.seconds = RandomForestRegressor(**forest).fit(x, per_epoch)
        self.noise = seed_spread(done)

    def predict(self, params: dict) -> tuple[float, float]:
        x = [self.encode(params)]
        return float(self.value.predict(x)[0]), float(self.seconds.predict(x)[0])


def seconds(trial: optuna.trial.FrozenTrial) -> float:
    """A measured trial's wall seconds (its duration is None only while it runs)."""
    if trial.duration is None:
        raise ValueError(f"trial {trial.number} ({trial.state.name}) has not ended")
    return trial.duration.total_seconds()


def seed_spread(done: list[optuna.trial.FrozenTrial]) -> float:
    """The std of val_acc between runs of one configuration (the start points, under each
    study's seed), pooled over the configurations run more than once."""
    runs: dict[str, list[float]] = {}
    for t in done:
        runs.setdefault(repr(sorted(t.params.items())), []).append(completed_value(t))
    repeated = [v for v in runs.values() if len(v) > 1]
    if not repeated:
        raise typer.BadParameter(
            "no configuration ran more than once (start points under two "
            "seeds): the noise cannot be measured"
        )
    return float(np.sqrt(np.mean([np.var(v, ddof=1) for v in repeated])))


def simulate(
    surrogate: Surrogate,
    space_path: str,
    seed: int,
    budget: float,
    n_trials: int,
    epochs: int,
    model: str,
) -> tuple[float, int]:
    """One study: (the sampler's best minus the best start point, number of trials)."""
    space = load_space(space_path)
    rng = np.random.default_rng(seed)
    pruner = make_pruner(resolve_pruner(TUNE.pruner, TUNE.objectives), epochs)  # tune's
    study = optuna.create_study(direction="maximize", sampler=make_sampler(seed), pruner=pruner)
    starts = space.starts(epochs)
    fixed = space.unsearched
    for params in starts:
        study.enqueue_trial(params)
    spent = 0.0
    while spent < budget and len(study.trials) < n_trials:
        trial = study.ask()
        space.sample(trial, model=model, epochs=epochs, seed=seed)
        mean, per_epoch = surrogate.predict({**fixed, **trial.params})
        value = mean + rng.normal(0.0, surrogate.noise)
        for epoch in range(1, epochs + 1):
            trial.report(value - surrogate.gain.get(epoch, 0.0), epoch)
            if trial.should_prune():
                break
        spent += per_epoch * epoch
        if epoch < epochs:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    values = [t.value for t in study.trials]  # None: pruned
    best = [
        max((v for v in part if v is not None), default=-math.inf)
        for part in (values[: len(starts)], values[len(starts) :])
    ]
    return best[1] - best[0], len(values)


app = typer.Typer(add_completion=False)


@app.command()
def main(
    storages: Annotated[list[str], typer.Argument(help="Optuna storages of measured studies.")],
    space: Annotated[list[Path], typer.Option(help="Search space to compare (repeat).")],
    runs: Annotated[int, typer.Option(min=1, help="Simulated studies per space.")] = 40,
    budget: Annotated[
        float, typer.Option(help="Seconds after which no trial starts (tune --timeout).")
    ] = TUNE.timeout,
    n_trials: Annotated[
        int, typer.Option(min=1, help="Trials at most (tune --n-trials).")
    ] = TUNE.n_trials,
    epochs: Annotated[
        int, typer.Option(min=1, help="Epochs of a finished trial.")
    ] = DEFAULT_EPOCHS["fcn"],
    model: Annotated[str, typer.Option(help="The spaces' model (tune --model).")] = "fcn",
) -> None:
    """Compare search spaces by how their sampler's own trials fare against their start points."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    trials = measured_trials(storages)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        raise typer.BadParameter(f"no finished trial with per-epoch values in {storages}")
    surrogate = Surrogate(trials)
    print(f"{len(trials)} measured trials; seed-to-seed spread {surrogate.noise * 100:.2f} points")
    for path in space:
        results = [
            simulate(surrogate, str(path), seed, budget, n_trials, epochs, model)
            for seed in range(runs)
        ]
        gaps = np.array([gap for gap, _ in results]) * 100
        print(
            f"{path}: sampler's best - best start point {gaps.mean():+.2f} ± {gaps.std():.2f} "
            f"points, reached or beat it in {int((gaps >= 0).sum())} of {runs} runs, "
            f"{np.mean([n for _, n in results]):.1f} trials"
        )


if __name__ == "__main__":
    app()
