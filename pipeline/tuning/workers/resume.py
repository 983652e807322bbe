"""Whether an existing study can go on under this call's settings, checked before any write:
the objectives and directions tune optimizes, and the kind of each parameter.

Optuna refuses a parameter whose kind changed since the study's earlier trials (float to
categorical, log to linear scale, other categorical choices) only when a trial suggests it:
that trial FAILs with a traceback and takes the parent run with it. `check_space` applies
Optuna's own rule (`check_distribution_compatibility`) to every parameter the study has seen
against what this call's search space would suggest, and names the first that differs.
"""

from __future__ import annotations

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
)

from pipeline.core.errors import UserError
from pipeline.tuning.space import SearchSpace
from pipeline.tuning.tune_settings import TuneSettings


def check_resumable(existing: optuna.Study, settings: TuneSettings, where: str) -> None:
    """Refuse, in one line starting with `where`, a study `tune` cannot continue."""
    check_directions(existing, settings, where)
    check_space(existing, settings, where)


def check_directions(existing: optuna.Study, settings: TuneSettings, where: str) -> None:
    if [d.name.lower() for d in existing.directions] == settings.directions:
        return
    if len(settings.directions) > 1:
        names = ",".join(existing.metric_names or ["?"])
        raise UserError(
            f"{where} exists with objective {names}; a frontier study optimizes "
            f"{settings.objectives}: choose another --study-name"
        )
    if len(existing.directions) > 1:
        raise UserError(
            f"{where} is multi-objective ({len(existing.directions)} objectives); "
            "tune maximizes val_acc alone unless --objectives says otherwise: "
            "choose another --study-name"
        )
    raise UserError(
        f"{where} exists with direction {existing.direction.name}; tune "
        "maximizes val_acc: choose another --study-name"
    )


def check_space(existing: optuna.Study, settings: TuneSettings, where: str) -> None:
    seen: dict[str, BaseDistribution] = {}
    for trial in existing.get_trials(deepcopy=False):
        seen.update(trial.distributions)
    asked = distributions(settings.space, settings.epochs)
    for name in sorted(seen.keys() & asked.keys()):
        try:
            check_distribution_compatibility(seen[name], asked[name])
        except ValueError:
            raise UserError(
                f"{where} searched {name[:60]} as {shown(seen[name])}; "
                f"{settings.space.path.name} makes it {shown(asked[name])}, which Optuna cannot "
                f"resume: choose another --study-name, or search {name[:60]} as before"
            ) from None


class Asked:
    """Stands in for a trial: records the distribution of each parameter a space suggests and
    answers the largest value, so that every width of the deepest network is suggested too."""

    def __init__(self) -> None:
        self.distributions: dict[str, BaseDistribution] = {}

    def suggest_float(self, name, low, high, *, step=None, log=False):
        self.distributions[name] = FloatDistribution(low, high, step=step, log=log)
        return high

    def suggest_int(self, name, low, high, *, step=1, log=False):
        self.distributions[name] = IntDistribution(low, high, step=step, log=log)
        return high

    def suggest_categorical(self, name, choices):
        self.distributions[name] = CategoricalDistribution(choices)
        return choices[0]


def distributions(space: SearchSpace, epochs: int) -> dict[str, BaseDistribution]:
    """What trials of `space` suggest, by parameter name: each family's too, its epochs at most
    `epochs`, as SearchSpace.sample suggests them."""
    asked = Asked()
    for param in space.params:
        param.suggest(asked)
    if space.families:
        asked.suggest_categorical("model", list(space.families))
        for params in space.families.values():
            for param in params:
                (param.capped(epochs) if param.name == "epochs" else param).suggest(asked)
    return asked.distributions


def shown(distribution: BaseDistribution) -> str:
    """A distribution in a few words (at most about 80 characters)."""
    if isinstance(distribution, CategoricalDistribution):
        choices = ", ".join(map(str, distribution.choices))
        return f"one of [{choices[:60]}{'...' if len(choices) > 60 else ''}]"
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        kind = "a float" if isinstance(distribution, FloatDistribution) else "an integer"
        scale = " on a log scale" if distribution.log else ""
        return f"{kind} in [{distribution.low}, {distribution.high}]{scale}"
    return type(distribution).__name__
