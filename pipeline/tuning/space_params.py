"""One parameter of a search space (the grammar: pipeline/tuning/space.py): its spec checked by
building the Optuna distributions it is sampled from, and its suggestion for a trial.

Optuna's distributions check what they are given (low <= high, log with low > 0, no step with
log, a positive step, a non-empty list of choices); their ValueError becomes the one-line
SpaceError. What they do not check stays here: the types YAML can give (a bool where a number
belongs, a string for a float), and whether each value makes a valid TrainConfig.

optuna is imported inside the functions that build distributions: `tune --help`, which imports
this module through tune_settings, stays instant.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any

from pipeline.core.config import MAX_DEPTH, MAX_WIDTH, TrainConfig
from pipeline.core.errors import ConfigError, UserError, first_line, quote

TYPES = ("float", "int", "categorical", "layers", "fixed")
SET_BY_TUNE = ("model", "epochs", "seed")
ALWAYS_HELD_OUT = "holdout"  # trials are selected on the validation split: every trial has one
SEARCHABLE = tuple(f for f in TrainConfig.fields() if f not in (*SET_BY_TUNE, ALWAYS_HELD_OUT))
SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
    "layers": {"type", "depth", "width"},
    "fixed": {"type", "value"},
}
MESSAGE_LIMIT = 300  # whatever a library's message quotes, the line stays readable


class SpaceError(UserError):
    """A malformed search-space file."""

    def __init__(self, message: str):
        cut = message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 3] + "..."
        super().__init__(cut)


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # one of TYPES
    spec: dict[str, Any]  # validated bounds / choices / value
    prefix: str = ""  # a model family's params: "fcn." (Optuna names fcn.lr, fcn.n_layers)
    # Optuna's param names (n_layers, width_1, ... for layers) and their distributions
    distributions: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def suggest(self, trial) -> Any:
        s, key = self.spec, self.prefix + self.name
        if self.kind == "float":
            return trial.suggest_float(key, s["low"], s["high"], log=s["log"], step=s["step"])
        if self.kind == "int":
            return trial.suggest_int(key, s["low"], s["high"], log=s["log"], step=s["step"] or 1)
        if self.kind == "categorical":
            return trial.suggest_categorical(key, s["choices"])
        if self.kind == "layers":
            depth = trial.suggest_int(f"{self.prefix}n_layers", *s["depth"])
            w = s["width"]
            return tuple(
                trial.suggest_int(
                    f"{self.prefix}width_{i}",
                    w["low"],
                    w["high"],
                    log=w["log"],
                    step=w["step"] or 1,
                )
                for i in range(1, depth + 1)
            )
        return s["value"]

    def as_params(self, value: Any) -> dict[str, Any] | None:
        """`value` as Optuna params (a start point's), or None where it is outside the space."""
        from optuna.trial import TrialState, create_trial

        if self.kind == "layers":
            if not isinstance(value, (list, tuple)) or not value:
                return None
            params = {f"{self.prefix}n_layers": len(value)}
            params.update({f"{self.prefix}width_{i}": w for i, w in enumerate(value, 1)})
        elif self.kind == "categorical":
            if self.name == "hidden" and isinstance(value, (list, tuple)):
                value = ",".join(map(str, value))
            params = {self.prefix + self.name: value}
        elif isinstance(value, bool):  # Optuna reads True as 1.0
            return None
        else:
            params = {self.prefix + self.name: value}
        if not set(params) <= set(self.distributions):
            return None  # a layer beyond the deepest depth
        try:  # Optuna's own check that each value lies in its distribution
            create_trial(
                state=TrialState.WAITING,
                params=params,
                distributions={k: self.distributions[k] for k in params},
            )
        except (ValueError, TypeError, OverflowError):
            return None
        return params

    def capped(self, cap: int) -> Param:
        """This `epochs` param with nothing above `cap` (tune --epochs)."""
        s = self.spec
        if self.kind == "fixed":
            return dataclasses.replace(self, spec={"value": min(s["value"], cap)})
        if self.kind == "categorical":
            return dataclasses.replace(
                self, spec={"choices": sorted({min(c, cap) for c in s["choices"]})}
            )
        return dataclasses.replace(
            self, spec={**s, "low": min(s["low"], cap), "high": min(s["high"], cap)}
        )

    @property
    def most(self) -> Any:
        """The largest value it can take (for `epochs`)."""
        s = self.spec
        if self.kind == "fixed":
            return s["value"]
        return max(s["choices"]) if self.kind == "categorical" else s["high"]


def parse_param(where: str, name: str, spec: Any, prefix: str = "") -> Param:
    """One `name: spec` entry of a space file as a Param; every problem a one-line SpaceError."""

    def fail(message: str) -> SpaceError:
        return SpaceError(f"{where}: {name if len(name) <= 40 else quote(name)}: {message}")

    if name in SET_BY_TUNE and not (prefix and name == "epochs"):
        raise fail(f"is set by tune (--{name}), not by the search space; remove it")
    if name == ALWAYS_HELD_OUT:
        raise fail(
            "tune selects on the validation split, so every trial holds it out; "
            "remove it (train --holdout false trains a final model on all 60,000)"
        )
    if name not in SEARCHABLE and name != "epochs":
        raise fail(f"unknown parameter; use one of {', '.join(SEARCHABLE)}")
    if not isinstance(spec, dict):
        spec = {"type": "fixed", "value": spec}
    kind = spec.get("type")
    if kind not in TYPES:
        raise fail(f"unknown type {quote(kind)}; use one of {', '.join(TYPES)}")
    unknown = set(map(str, spec)) - SPEC_KEYS[kind]
    if unknown:
        raise fail(
            f"unknown key(s) {', '.join(sorted(unknown))} for type {kind}; "
            f"allowed: {', '.join(sorted(SPEC_KEYS[kind]))}"
        )
    if name == "epochs" and kind in ("float", "layers"):
        raise fail(f"type {kind} cannot give a number of epochs; use int, categorical or fixed")
    distributions: dict[str, Any] = {}
    if kind in ("float", "int"):
        spec = _range(fail, spec, kind)
        _check_values(fail, name, [spec["low"], spec["high"]])
        distributions[prefix + name] = _distribution(fail, kind, spec)
    elif kind == "categorical":
        spec = _categorical(fail, name, spec)
        distributions[prefix + name] = _distribution(fail, kind, spec)
    elif kind == "layers":
        spec = _layers(fail, name, spec)
        depth, width = spec["depth"], spec["width"]
        depth_spec = {"low": depth[0], "high": depth[1], "log": False, "step": None}
        distributions[f"{prefix}n_layers"] = _distribution(
            lambda m: fail(f"depth: {m}"), "int", depth_spec
        )
        one = _distribution(lambda m: fail(f"width: {m}"), "int", width)
        distributions.update({f"{prefix}width_{i}": one for i in range(1, depth[1] + 1)})
    else:
        if "value" not in spec:
            raise fail("a fixed parameter needs a value")
        _check_values(fail, name, [spec["value"]])
        spec = {"value": spec["value"]}
    return Param(name, kind, spec, prefix, distributions)


def _distribution(fail, kind: str, spec: dict) -> Any:
    """The Optuna distribution of `spec`, whose own checks of it become SpaceErrors; so does
    its warning that a range is not a whole number of steps (it would move `high`)."""
    from optuna import distributions as d

    made: Any
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if kind == "categorical":
                made = d.CategoricalDistribution(spec["choices"])
            elif kind == "float":
                made = d.FloatDistribution(
                    spec["low"], spec["high"], log=spec["log"], step=spec["step"]
                )
            else:
                made = d.IntDistribution(
                    spec["low"], spec["high"], log=spec["log"], step=spec["step"] or 1
                )
        except (ValueError, OverflowError) as e:  # it quotes values as they are: cut them short
            raise fail(re.sub(r"\d{41,}", lambda m: quote(int(m[0])), first_line(e))) from None
    if caught:  # Optuna would lower high to the last whole step
        raise fail(f"high - low is not a multiple of step {quote(spec['step'])}; make it one")
    return made


def _categorical(fail, name: str, spec: dict) -> dict:
    choices = spec.get("choices")
    if not isinstance(choices, list):
        raise fail("choices must be a non-empty list")
    if name == "hidden":  # Optuna stores str, int, float, bool or None: widths as "300,200"
        choices = [",".join(map(str, c)) if isinstance(c, list) else c for c in choices]
    if any(not isinstance(c, (str, int, float, bool)) for c in choices):
        raise fail("choices must be strings, numbers or booleans")
    if len(set(map(repr, choices))) != len(choices):
        raise fail("choices repeat a value")
    _check_values(fail, name, choices)
    return {"choices": choices}


def _layers(fail, name: str, spec: dict) -> dict:
    if name != "hidden":
        raise fail("type layers is only for hidden")
    depth = spec.get("depth")
    if not (
        isinstance(depth, list)
        and len(depth) == 2
        and all(isinstance(d, int) and not isinstance(d, bool) for d in depth)
        and 1 <= depth[0]
        and depth[1] <= MAX_DEPTH
    ):
        raise fail(
            f"depth must be [low, high] with integers 1 <= low <= high <= {MAX_DEPTH} "
            "(train's limit on --hidden)"
        )
    width = spec.get("width")
    if not isinstance(width, dict) or set(width) - {"low", "high", "log", "step"}:
        raise fail("width must be a mapping with low, high and optional log / step")
    width = _range(lambda m: fail(f"width: {m}"), {**width, "type": "int"}, "int")
    if width["low"] < 1 or width["high"] > MAX_WIDTH:
        raise fail(f"width: must be within [1, {MAX_WIDTH}] (train's limit on --hidden)")
    return {"depth": depth, "width": width}


def _range(fail, spec: dict, kind: str) -> dict:
    """The types YAML may get wrong; Optuna's distribution checks how the values relate."""
    number = int if kind == "int" else (int, float)
    log, step = spec.get("log", False), spec.get("step")
    for key in ("low", "high", "step"):
        value = spec.get(key)
        if (key == "step" and value is None) or (
            isinstance(value, number)
            and not isinstance(value, bool)
            and (kind == "int" or abs(value) <= sys.float_info.max)  # a 400-digit int is not
        ):
            continue
        what = "an integer" if kind == "int" else "a finite number"
        raise fail(f"{key} must be {what}, got {quote(value)}")
    if not isinstance(log, bool):
        raise fail(f"log must be true or false, got {quote(log)}")
    return {"low": spec["low"], "high": spec["high"], "log": log, "step": step}


def _check_values(fail, name: str, values: list) -> None:
    """Each value must make a valid TrainConfig: catches 'lbfgs', dropout 1.5, lr -1 ..."""
    for value in values:
        try:
            dataclasses.replace(TrainConfig(), **{name: value})
        except ConfigError as e:
            raise fail(f"value {quote(value)} is invalid: {e}") from None
        except TypeError:
            raise fail(f"value {quote(value)} has the wrong type") from None
