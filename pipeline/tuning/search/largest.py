"""The largest model a search space can sample, refused before the study starts when it cannot
fit in memory (core/memory.py).

A trial that would not fit otherwise made its MLflow run, then died in the allocator or to the
OOM killer, its run and trial left RUNNING, and the next trial could sample it again. Here each
range gives its top (the most layers, each at the widest; the largest batch; the most dropout)
and each categorical the choice that needs most memory, found one parameter at a time until no
change adds memory (the estimate grows with each parameter separately, so that is the largest).
"""

from __future__ import annotations

from typing import Any

from pipeline.core import memory
from pipeline.core.config import TrainConfig
from pipeline.core.training import pick_device
from pipeline.tuning.space import SearchSpace
from pipeline.tuning.tune_settings import TuneSettings


class _Largest:
    """Answers Optuna's suggest_* calls (as space.sample makes them) with the top of each range,
    and each categorical with its choice in `chosen` (the first one otherwise)."""

    def __init__(self, chosen: dict[str, Any]):
        self.chosen = chosen
        self.categoricals: dict[str, list] = {}

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        return high

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        return high

    def suggest_categorical(self, name: str, choices: list) -> Any:
        self.categoricals[name] = list(choices)
        return self.chosen.get(name, choices[0])


def largest_config(space: SearchSpace, **set_by_tune: Any) -> TrainConfig:
    """The config of `space` whose training needs the most memory (`set_by_tune`: model,
    epochs, seed, as for space.sample)."""

    def sample(chosen: dict[str, Any]) -> tuple[TrainConfig, dict[str, list], int]:
        trial = _Largest(chosen)
        config = space.sample(trial, **set_by_tune)
        return config, trial.categoricals, memory.estimate(config).total

    chosen: dict[str, Any] = {}
    best, categoricals, need = sample(chosen)
    changed = True
    while changed:
        changed = False
        for name, choices in list(categoricals.items()):
            for choice in choices:
                config, asked, bytes_ = sample({**chosen, name: choice})
                if bytes_ > need:
                    chosen[name] = choice
                    best, categoricals, need, changed = config, asked, bytes_, True
    return best


def check_space_fits(settings: TuneSettings) -> None:
    """One line (UserError) when the space's largest model cannot fit in this machine's memory
    with `settings.workers` training at once."""
    config = largest_config(
        settings.space, model=settings.model, epochs=settings.epochs, seed=settings.seed
    )
    layers = f", hidden {memory.layers(config.hidden)}" if config.model == "fcn" else ""
    memory.check_fits(
        config,
        pick_device(),
        what=f"{settings.space.path.name}: its largest model ({config.model}{layers}, "
        f"{config.optimizer}, batch {config.batch_size})",
        fix="narrow the space (fewer or narrower layers, smaller batches) or use fewer --workers"
        if settings.workers > 1
        else "narrow the space (fewer or narrower layers, smaller batches)",
        share=settings.workers,
    )
