"""A default study that fits the machine it runs on: trials as long as its budget allows.

Machines differ by 3x and more: a 20-epoch trial of the 1024-512 FCN takes about 80 s on a fast
2-core Xeon and 264 s on a slow 2-core EPYC, where the 9-minute default budget held only the two
start points. So unless `--epochs` is given, `fit(settings, data, storage)` times one epoch of
the space's first start point on this machine (pipeline/core/timing.py, about a second and a
half) and picks the longest trial of EPOCH_TIERS (at most the model's default) that takes at most
TRIAL_SHARE of `--timeout`; it says what it chose in one line. A study records its trials'
length when it is created (EPOCHS_ATTR): resumed, on any machine, it trains them as long.

`Overtime` is the budget's other half: a trial that would end more than OVERTIME_SHARE of the
budget past it stops (PRUNED), so the last trial cannot double a short study's time.
"""

from __future__ import annotations

import dataclasses
import time

import optuna

from pipeline.core.config import TrainConfig
from pipeline.core.data import FashionMNIST
from pipeline.core.timing import epoch_seconds
from pipeline.core.training import EpochEnd
from pipeline.tuning.attrs import EPOCHS_ATTR
from pipeline.tuning.search.sampler import expected_epochs
from pipeline.tuning.tune_settings import TRIAL_SHARE, TuneSettings

# Trial lengths to choose from, coarse so that timing noise on one machine picks the same one.
EPOCH_TIERS = (20, 14, 10, 7, 5, 3, 2, 1)
OVERTIME_SHARE = 0.2  # a trial may end at most this share of --timeout past it


def fit(
    settings: TuneSettings,
    data: FashionMNIST,
    storage: optuna.storages.BaseStorage,
    epochs_given: bool,
) -> TuneSettings:
    """The settings with the trials' epochs fitted to this machine (unless `epochs_given`, or
    the study already exists: then its own), after one line on what this machine allows."""
    if settings.helper_of or len(settings.directions) > 1:
        return settings  # a helper has its main worker's epochs; a frontier its space's
    stored = recorded_epochs(storage, settings.study_name)
    reference = reference_config(settings)
    seconds = epoch_seconds(reference, data)
    if stored is not None:
        epochs, why = stored, "as this study began (it records its trials' length)"
    elif epochs_given:
        epochs, why = settings.epochs, "(--epochs)"
    else:
        epochs = fitted_epochs(seconds, settings.timeout, settings.epochs)
        why = (
            "fitted to this machine (--epochs to choose)"
            if epochs < settings.epochs
            else "(--epochs to choose)"
        )
    print(machine_line(reference, seconds, epochs, why, settings), flush=True)
    return dataclasses.replace(settings, epochs=epochs)


def recorded_epochs(storage: optuna.storages.BaseStorage, study_name: str) -> int | None:
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return None
    value = storage.get_study_user_attrs(study_id).get(EPOCHS_ATTR)
    return int(value) if value is not None else None


def fitted_epochs(epoch_s: float, timeout: float | None, most: int) -> int:
    """The longest tier of at most `most` epochs whose trial takes TRIAL_SHARE of `timeout`
    or less (the shortest tier if none does); `most` without a timeout."""
    if timeout is None:
        return most
    tiers = [e for e in EPOCH_TIERS if e <= most] or [most]
    return next((e for e in tiers if e * epoch_s <= TRIAL_SHARE * timeout), tiers[-1])


def reference_config(settings: TuneSettings) -> TrainConfig:
    """What a trial of this study trains first: the space's first start point, else the
    model's own defaults."""
    starts = settings.space.starts(settings.epochs)
    if starts:
        try:
            return settings.space.sample(
                optuna.trial.FixedTrial(starts[0]),
                model=settings.model,
                epochs=1,
                seed=settings.seed,
            )
        except ValueError:  # a start point that leaves params to the sampler
            pass
    return TrainConfig(model=settings.model, epochs=1, seed=settings.seed)


def describe(config: TrainConfig) -> str:
    if config.model == "fcn":
        return f"the {'-'.join(map(str, config.hidden))} FCN"
    return config.model


def machine_line(
    reference: TrainConfig, epoch_s: float, epochs: int, why: str, settings: TuneSettings
) -> str:
    line = (
        f"this machine: ~{epoch_s:.1f} s per epoch of {describe(reference)} (batch "
        f"{reference.batch_size}); trials of {epochs} epochs {why}"
    )
    if settings.timeout is None:
        return line
    full = settings.timeout / (epochs * epoch_s)
    line += f"; the budget (--timeout {settings.timeout:g} s) fits about {full:.0f} such trials"
    if settings.pruner == "halving":
        stopped = expected_epochs(epochs, "halving")
        fits = 1 + max(settings.timeout - epochs * epoch_s, 0) / (stopped * epoch_s)
        line += f", or about {fits:.0f} when the pruner stops them as early as it can"
    return line


class Overtime:
    """Training callback: stop a trial (PRUNED) once its epochs so far say it would end more
    than `overtime` seconds past the study's `deadline` (time.monotonic)."""

    def __init__(self, deadline: float, overtime: float, epochs: int):
        self.deadline, self.overtime, self.epochs = deadline, overtime, epochs
        self.start = time.monotonic()

    def __call__(self, end: EpochEnd) -> None:
        now = time.monotonic()
        left = (self.epochs - end.epoch) * (now - self.start) / end.epoch
        late = now + left - self.deadline
        if left and late > self.overtime:
            raise optuna.TrialPruned(
                f"stopped at epoch {end.epoch}: it would end {late:.0f} s after the study's "
                "budget (--timeout)"
            )
