"""How a study searches: a TPE sampler seeded per trial, the pruner, and opening the study.

The frontier (several objectives) keeps the same sampler: TPE is multi-objective (MOTPE, and
Optuna 5's default there) and, with `group`, models each model family's conditional parameters
apart. NSGA-II samples only the parameters every trial shares (the intersection search space),
draws the rest at random, and spends its first generation (50 trials by default) at random:
more than a frontier study of a few dozen trials holds.

`open_study(settings)` creates the study (with its identity, attrs.STUDY_ID_ATTR, and the search
space's start points queued, once) or loads it, with `TrialSeededSampler` and the pruner named
in the settings.
"""

from __future__ import annotations

import uuid
import warnings
from typing import TypedDict

import numpy as np
import optuna

from pipeline.tuning.attrs import EPOCHS_ATTR, STUDY_ID_ATTR
from pipeline.tuning.tune_settings import TuneSettings
from pipeline.tuning.workers.storage import check_storage

CHANCE_FLOOR = 0.15  # val_acc of a network that learned nothing: 1 in 10 classes


class StuckAtChance(optuna.pruners.BasePruner):
    """Stops a trial whose val_acc is still below 0.15 at epoch 3 or later, else asks `inner`.

    A network that collapsed (Adam at lr 0.038 without batch norm, in a default study) answers
    one class for every image and stays there: val_acc 0.095-0.103 for all 20 epochs, 69 s of a
    10-minute study, while the percentile pruner still waited for its 5 finished trials.
    """

    def __init__(self, inner: optuna.pruners.BasePruner, from_epoch: int = 3):
        self.inner, self.from_epoch = inner, from_epoch

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        epoch = trial.last_step
        if (
            epoch is not None
            and epoch >= self.from_epoch
            and trial.intermediate_values[epoch] < CHANCE_FLOOR
        ):
            return True
        return self.inner.prune(study, trial)


def make_pruner(name: str, epochs: int = 20) -> optuna.pruners.BasePruner:
    """The pruner `name` for trials of `epochs` epochs."""
    if name in ("halving", "percentile", "median"):
        return StuckAtChance(_make_pruner(name, epochs))
    return _make_pruner(name, epochs)  # Optuna's TPE reads a HyperbandPruner's brackets


class FirstRungs(optuna.pruners.BasePruner):
    """Asks `inner` (successive halving) only up to epoch `last`: past it a trial trains to
    its end. Optuna's rungs go on forever (1, 3, 9, 27, ...); a rung in the last third of a
    trial saves little and stops trials that the last epochs of a cosine schedule still lift."""

    def __init__(self, inner: optuna.pruners.BasePruner, last: int):
        self.inner, self.last = inner, last

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if trial.last_step is None or trial.last_step > self.last:
            return False
        return self.inner.prune(study, trial)


HALVING_ETA = 3  # each rung keeps the best third of the trials that reached it
# The percentile and median pruners wait for 5 finished trials and 3 epochs: early epochs of a
# slow starter look poor.
WAIT = {"n_startup_trials": 5, "n_warmup_steps": 3}


def halving_rungs(epochs: int) -> tuple[int, ...]:
    """The epochs at which successive halving compares trials of `epochs` epochs: 1, 3, 9, ...
    up to two thirds of the trial (1, 3, 9 for 14 or 20 epochs; 1, 3 for 10)."""
    rungs, rung = [], 1
    while 3 * rung <= 2 * epochs:
        rungs.append(rung)
        rung *= HALVING_ETA
    return tuple(rungs)


def _make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "halving":
        # Multi-fidelity from the first trial: at epochs 1, 3, 9 (up to 2/3 of the trial) a trial
        # goes on only if it is in the best third of all trials that reached that epoch, the
        # stopped ones included (before three have, only the best so far). Nothing waits for
        # finished trials, so a study of a dozen trials on a slow machine prunes from its
        # second trial; TPE learns from the stopped trials' last values.
        rungs = halving_rungs(epochs)
        sha = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=HALVING_ETA)
        return FirstRungs(sha, rungs[-1]) if rungs else optuna.pruners.NopPruner()
    if name == "percentile":
        # Stop only the bottom quarter, against the study's completed trials, from epoch 3 on.
        # Good FCN configurations sit within 0.5 points of each other at epoch 3 (0.864-0.869
        # in the default study) and their order there says little about epoch 20: the median
        # cut 12 of TPE's trials that stood level with them (docs/history.md).
        # (Optuna names the share it keeps: the best 75%.)
        return optuna.pruners.PercentilePruner(75.0, **WAIT)
    if name == "median":
        return optuna.pruners.MedianPruner(**WAIT)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2)
    return optuna.pruners.NopPruner()


def expected_epochs(epochs: int, pruner: str) -> float:
    """Epochs a trial trains on average under `pruner` if it stops as many as it may: with
    halving, all reach epoch 1, a third epoch 3, a ninth epoch 9, ...; others: all of them."""
    if pruner != "halving":
        return float(epochs)
    bounds = (*halving_rungs(epochs), epochs)
    return bounds[0] + sum(
        (b - a) / HALVING_ETA ** (i + 1) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))
    )


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial `number` of a study of `seed`: one stream per study seed.
    (`seed + number` made study 1's trial k draw what study 0's trial k + 1 drew.)"""
    return int(np.random.SeedSequence((seed, number)).generate_state(1)[0])


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """TPE whose random draws for trial k come from `trial_seed(seed, k)`: a TPESampler of
    that seed is made for each trial and asked everything about it.

    So a resumed study continues the sequence instead of replaying its random start-up
    configurations, one call of 4 trials samples what two calls of 2 sample, and workers that
    start together do not all try the same configurations. TPE keeps no state between trials
    that matters here: it reads the study's trials each time.
    """

    def __init__(self, seed: int, **tpe_kwargs):
        self.seed, self.tpe_kwargs = seed, tpe_kwargs
        self.by_trial: dict[int, optuna.samplers.TPESampler] = {}

    def tpe(self, trial: optuna.trial.FrozenTrial) -> optuna.samplers.TPESampler:
        if trial.number not in self.by_trial:
            with warnings.catch_warnings():  # multivariate and group are "experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.by_trial[trial.number] = optuna.samplers.TPESampler(
                    seed=trial_seed(self.seed, trial.number), **self.tpe_kwargs
                )
        return self.by_trial[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self.tpe(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.tpe(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.tpe(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self.tpe(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        # Also called when this worker fails another worker's dead trial: no TPE of its own.
        tpe = self.by_trial.pop(trial.number, None)
        if tpe is not None:
            tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        pass  # the seeds come from the trial numbers


# TPE samples at random until this many trials have finished (completed or pruned).
N_STARTUP_TRIALS = 6


def make_sampler(seed: int) -> TrialSeededSampler:
    # group: the FCN's depth changes which width params exist; multivariate TPE then models
    # each group of co-occurring params jointly.
    return TrialSeededSampler(
        seed, multivariate=True, group=True, n_startup_trials=N_STARTUP_TRIALS
    )


class _StudyArgs(TypedDict):
    """What optuna.create_study and optuna.load_study are both given."""

    study_name: str
    storage: optuna.storages.BaseStorage
    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner


def open_study(
    settings: TuneSettings, storage: optuna.storages.BaseStorage | None = None
) -> optuna.Study:
    storage = storage or check_storage(settings)
    kwargs = _StudyArgs(
        study_name=settings.study_name,
        storage=storage,
        sampler=make_sampler(settings.seed),
        pruner=make_pruner(settings.pruner, settings.epochs),
    )
    try:  # only the worker that creates the study queues its start points, even in a race
        study = optuna.create_study(directions=settings.directions, **kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(**kwargs)
    # First: what tells this study's runs and models from those of any study made before
    # under the same name and storage (tuning/registry/logged_models.py).
    study.set_user_attr(STUDY_ID_ATTR, uuid.uuid4().hex)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # optuna-dashboard shows "val_acc" (and "train_time_s"), not "Objective 0"
        study.set_metric_names(settings.metric_names)
    # A resumed study trains as long as it began, whatever machine resumes it (search/budget.py)
    study.set_user_attr(EPOCHS_ATTR, settings.epochs)
    for params in settings.space.starts(settings.epochs):
        study.enqueue_trial(params, skip_if_exists=True)
    return study
