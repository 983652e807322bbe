"""Optuna search spaces as data: read and validate `search_spaces/*.yaml`, sample a TrainConfig.

The grammar (one YAML mapping; keys are `train` parameters, so a trial is just a train config):

    recipe:     fast_cnn                                             # what is not searched
    lr:         {type: float, low: 1.0e-4, high: 0.3, log: true}    # optional step (not with log)
    batch_size: {type: int, low: 128, high: 512, step: 128}          # optional step or log
    optimizer:  {type: categorical, choices: [sgd, adam]}
    hidden:     {type: layers, depth: [1, 3], width: {low: 64, high: 1024, log: true}}
    weight_decay: 0.0                                                # a fixed value
    init:       {type: fixed, value: kaiming_uniform}                # the same, spelled out

`recipe` names a recipe (pipeline/core/recipes.py): every parameter the space neither searches
nor fixes takes the recipe's value (without one, train's default). `layers` samples a depth (at
most train's limit on --hidden layers), then one width per layer (Optuna params `n_layers`,
`width_1`, ...). Optuna's distributions check the bounds (pipeline/tuning/space_params.py).

One reserved key, `enqueue`, lists configurations that a new study tries first (Optuna's
`enqueue_trial`), so the search starts from them and compares against them:

    enqueue:
      - fast_cnn                                            # a recipe, by name
      - {optimizer: adam, lr: 8.0e-5, hidden: [300, 200]}   # unlisted params are sampled

A recipe's name enqueues its value of every searched parameter; the space must give it all the
others (a trial that differed from the recipe would not be it), so the space says `recipe:`.

`model`, `epochs` and `seed` are set by `tune`, except in a space whose `model` key lists model
families, each with its own parameters (the accuracy-vs-time frontier, search_spaces/frontier.yaml):

    model:                       # Optuna param `model`, then only that family's params
      fcn:
        epochs: {type: int, low: 1, high: 20}   # per family, capped by tune --epochs
        hidden: {type: layers, depth: [1, 2], width: {low: 32, high: 1024, log: true}}
      fast_cnn:
        recipe: fast_cnn         # a family's recipe: that family's
        epochs: {type: int, low: 1, high: 10}
    batch_size: 256              # keys outside `model` are shared by every family
    enqueue:
      - {model: fcn, epochs: 3}  # a start point names its family
      - fast_cnn                 # or is a recipe of one

A family's params are Optuna params prefixed with its name (`fcn.lr`, `fast_cnn.lr`), so TPE
models each family apart; each family must give its `epochs` (time is what the frontier weighs).

The file is read strictly (pipeline/tuning/space_file.py: no key given twice, no alias, no
.inf or .nan) and every value an error quotes is cut short: `load_space` rejects a malformed
file with one line naming the file, the key and what is wrong, before any trial runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.config import FCN_ONLY, MODELS, TrainConfig
from pipeline.core.errors import quote
from pipeline.core.recipes import RECIPES
from pipeline.tuning.space_file import read
from pipeline.tuning.space_params import SEARCHABLE, Param, SpaceError, parse_param

__all__ = ["SearchSpace", "SpaceError", "load_space"]


def recipe_values(name: str) -> dict[str, Any]:
    """What a space's trials take from its recipe: each searchable parameter's value."""
    return {f: getattr(RECIPES[name], f) for f in SEARCHABLE} if name else {}


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    params: tuple[Param, ...]
    enqueue: tuple[dict[str, Any], ...] = ()  # Optuna param dicts, ready for enqueue_trial
    families: dict[str, tuple[Param, ...]] = dataclasses.field(default_factory=dict)
    recipe: str = ""  # its `recipe:` (""; none); a family's is in family_recipes
    family_recipes: dict[str, str] = dataclasses.field(default_factory=dict)

    def sample(self, trial, **set_by_tune: Any) -> TrainConfig:
        """A TrainConfig from the trial's suggestions plus tune's model, epochs and seed, the
        rest from the recipe; with families, the trial's family and its epochs, at most tune's
        `epochs`."""
        values = {p.name: p.suggest(trial) for p in self.params}
        recipe = self.recipe
        if self.families:
            model = trial.suggest_categorical("model", list(self.families))
            cap = set_by_tune.pop("epochs")
            for p in self.families[model]:
                values[p.name] = (p.capped(cap) if p.name == "epochs" else p).suggest(trial)
            set_by_tune["model"] = model
            recipe = self.family_recipes.get(model, "")
        return TrainConfig(**{**recipe_values(recipe), **values, **set_by_tune})

    def starts(self, cap: int) -> tuple[dict[str, Any], ...]:
        """The enqueued configurations, a family's epochs at most `cap` (tune --epochs)."""
        return tuple(
            {k: min(v, cap) if k.endswith(".epochs") else v for k, v in start.items()}
            for start in self.enqueue
        )

    @property
    def max_epochs(self) -> int:
        """The most epochs a trial of this family space can train."""
        return max(p.most for ps in self.families.values() for p in ps if p.name == "epochs")

    @property
    def searched(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.kind != "fixed")

    @property
    def unsearched(self) -> dict[str, Any]:
        """The values every trial of a space without families shares: its fixed params', the
        rest its recipe's."""
        fixed = {p.name: p.spec["value"] for p in self.params if p.kind == "fixed"}
        shared = {k: v for k, v in recipe_values(self.recipe).items() if k not in self.searched}
        return {**shared, **fixed}

    def check_model(self, model: str) -> None:
        """Refuse a space that searches what `model` ignores (its trials would differ only in
        values that change nothing: the CNNs have fixed layers), or whose recipe is another
        model's."""
        ignored = [name for name in self.searched if name in FCN_ONLY and model != "fcn"]
        if ignored:
            raise SpaceError(
                f"{self.path.name}: searches {', '.join(ignored)}, which "
                f"--model {model} ignores (only fcn uses it); use "
                "search_spaces/cnn.yaml or study_cnn.yaml, or remove it"
            )
        if self.recipe and RECIPES[self.recipe].model != model:
            raise SpaceError(
                f"{self.path.name}: starts from recipe {self.recipe}, a "
                f"{RECIPES[self.recipe].model}; use --model {RECIPES[self.recipe].model}, or a "
                f"space for {model} (search_spaces/)"
            )


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate one search-space file; every problem is a one-line SpaceError."""
    path = Path(path)
    where = path.name
    raw = read(path)
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(f"{where}: must be a non-empty mapping of train parameters to specs")
    starts = raw.pop("enqueue", [])
    recipe = _recipe(where, raw.pop("recipe", ""))
    families, family_recipes = _families(where, raw.pop("model")) if "model" in raw else ({}, {})
    if recipe and families:
        raise SpaceError(f"{where}: recipe: with model families, give each family its recipe")
    params = tuple(parse_param(where, str(name), spec) for name, spec in raw.items())
    for family, own in families.items():
        both = {p.name for p in own} & {p.name for p in params}
        if both:
            raise SpaceError(
                f"{where}: model: {family}: {', '.join(sorted(both))} is also "
                "given outside `model`; give it in one place"
            )
    searched = [p for ps in (params, *families.values()) for p in ps if p.kind != "fixed"]
    if not searched and len(families) < 2:
        raise SpaceError(f"{where}: searches nothing; give at least one parameter a type")
    if not isinstance(starts, list):
        raise SpaceError(f"{where}: enqueue: must be a list of parameter mappings or recipes")
    space = SearchSpace(path, params, (), families, recipe, family_recipes)
    for family in families:
        space.check_model(family)
    enqueue = tuple(_start(space, i, start) for i, start in enumerate(starts, 1))
    return dataclasses.replace(space, enqueue=enqueue)


def _recipe(where: str, name: Any) -> str:
    if name != "" and (not isinstance(name, str) or name not in RECIPES):
        raise SpaceError(f"{where}: recipe: {quote(name)} is not one of {', '.join(RECIPES)}")
    return name


def _families(where: str, raw: Any) -> tuple[dict[str, tuple[Param, ...]], dict[str, str]]:
    """`model:` as families, each a mapping of its own params (prefixed `<family>.`) that
    gives its `epochs`, and their recipes."""
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(
            f"{where}: model: is set by tune (--model), unless it maps model "
            "families to their parameters, as search_spaces/frontier.yaml does"
        )
    families, recipes = {}, {}
    for family, own in raw.items():
        at = f"{where}: model: {family}"
        if family not in MODELS:
            raise SpaceError(
                f"{where}: model: unknown family {quote(family)}; use {', '.join(MODELS)}"
            )
        if not isinstance(own, dict) or "epochs" not in own:
            raise SpaceError(
                f"{at}: must map its parameters, its epochs among them "
                "(a number or a range: the frontier weighs time)"
            )
        own = dict(own)
        recipes[family] = _recipe(at, own.pop("recipe", ""))
        if recipes[family] and RECIPES[recipes[family]].model != family:
            raise SpaceError(f"{at}: recipe: {recipes[family]} is not a {family}")
        families[family] = tuple(
            parse_param(at, str(name), spec, prefix=f"{family}.") for name, spec in own.items()
        )
        for p in families[family]:
            if p.name in FCN_ONLY and family != "fcn":
                raise SpaceError(
                    f"{at}: searches {p.name}, which {family} ignores (only fcn uses it)"
                )
    return families, {f: r for f, r in recipes.items() if r}


def _start(space: SearchSpace, index: int, start: Any) -> dict[str, Any]:
    """One enqueued configuration as Optuna params: a recipe's name, or a mapping whose values
    are each checked against their spec."""
    where = f"{space.path.name}: enqueue #{index}"
    if isinstance(start, str):
        return _recipe_start(space, where, start)
    if not isinstance(start, dict) or not start:
        raise SpaceError(
            f"{where}: must be a recipe's name or a mapping of searched parameters to values"
        )
    return _values(space, where, start)


def _values(space: SearchSpace, where: str, start: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    params = space.params
    if space.families:
        start = dict(start)
        family = start.pop("model", None)
        if not isinstance(family, str) or family not in space.families:
            raise SpaceError(
                f"{where}: model: {quote(family)} is not one of this space's families "
                f"({', '.join(space.families)}); a start point names its family"
            )
        out["model"] = family
        params = (*params, *space.families[family])
    by_name = {p.name: p for p in params if p.kind != "fixed"}
    for name, value in start.items():
        param = by_name.get(name) if isinstance(name, str) else None
        if param is None:
            raise SpaceError(f"{where}: {name} is not a searched parameter of this space")
        as_params = param.as_params(value)
        if as_params is None:
            raise SpaceError(f"{where}: {name}: {quote(value)} is outside the space")
        out.update(as_params)
    return out


def _recipe_start(space: SearchSpace, where: str, name: str) -> dict[str, Any]:
    """A recipe as a start point: its value of each searched parameter. The trial must be the
    recipe, so the space must give it every other value (its own `recipe:` does)."""
    from optuna.trial import FixedTrial

    if name not in RECIPES:
        raise SpaceError(f"{where}: {quote(name)} is not one of {', '.join(RECIPES)}")
    recipe, where = RECIPES[name], f"{where}: {name}"
    own = RECIPES[space.recipe].model if space.recipe else None
    if not space.families and own != recipe.model:  # tune's --model is checked against `own`
        raise SpaceError(f"{where}: starts only a space whose own recipe: is a {recipe.model}")
    start: dict[str, Any] = {"model": recipe.model} if space.families else {}
    searched = (*space.params, *space.families.get(recipe.model, ()))
    start.update({p.name: getattr(recipe, p.name) for p in searched if p.kind != "fixed"})
    params = _values(space, where, start)
    trial = space.sample(
        FixedTrial(params), model=recipe.model, epochs=recipe.epochs, seed=recipe.seed
    )
    differ = [f for f in ("epochs", *SEARCHABLE) if getattr(trial, f) != getattr(recipe, f)]
    if differ:
        f = differ[0]
        raise SpaceError(
            f"{where}: its trial would have {f} {quote(getattr(trial, f))}, not the recipe's "
            f"{quote(getattr(recipe, f))}; search {f}, or start the space from the recipe "
            f"(recipe: {name})"
        )
    return params
