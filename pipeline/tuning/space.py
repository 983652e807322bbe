"""Optuna search spaces as data: read and validate `search_spaces/*.yaml`, sample a TrainConfig.

The grammar (one YAML mapping; keys are `train` parameters, so a trial is just a train config):

    lr:         {type: float, low: 1.0e-4, high: 0.3, log: true}    # optional step (not with log)
    batch_size: {type: int, low: 128, high: 512, step: 128}          # optional step or log
    optimizer:  {type: categorical, choices: [sgd, adam]}
    hidden:     {type: layers, depth: [1, 3], width: {low: 64, high: 1024, log: true}}
    weight_decay: 0.0                                                # a fixed value
    init:       {type: fixed, value: kaiming_uniform}                # the same, spelled out

`layers` samples a depth, then one width per layer (Optuna params `n_layers`, `width_1`, ...).

One reserved key, `enqueue`, lists known configurations that a new study tries first (Optuna's
`enqueue_trial`), so the search starts from them and compares against them:

    enqueue:
      - {optimizer: adam, lr: 8.0e-5, hidden: [300, 200]}   # unlisted params are sampled

`model`, `epochs` and `seed` are set by `tune`, except in a space whose `model` key lists model
families, each with its own parameters (the accuracy-vs-time frontier, search_spaces/frontier.yaml):

    model:                       # Optuna param `model`, then only that family's params
      fcn:
        epochs: {type: int, low: 1, high: 20}   # per family, capped by tune --epochs
        hidden: {type: layers, depth: [1, 2], width: {low: 32, high: 1024, log: true}}
      fast_cnn:
        epochs: {type: int, low: 1, high: 10}
    batch_size: 256              # keys outside `model` are shared by every family
    enqueue:
      - {model: fast_cnn, epochs: 3}   # a start point names its family

A family's params are Optuna params prefixed with its name (`fcn.lr`, `fast_cnn.lr`), so TPE
models each family apart; each family must give its `epochs` (time is what the frontier weighs).
`load_space` rejects a malformed file with one line naming the file, the key and what is wrong,
before any trial runs.

Imports no optuna: sampling takes any object with Optuna's `suggest_*` methods (a Trial, a
FixedTrial), so reading and checking a space stays instant.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.config import FCN_ONLY, MAX_WIDTH, MODELS, TrainConfig
from pipeline.core.errors import ConfigError, UserError

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


class SpaceError(UserError):
    """A malformed search-space file."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # one of TYPES
    spec: dict[str, Any]  # validated bounds / choices / value
    prefix: str = ""  # a model family's params: "fcn." (Optuna names fcn.lr, fcn.n_layers)

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
        return (
            s["value"]
            if self.kind == "fixed"
            else max(s["choices"])
            if self.kind == "categorical"
            else s["high"]
        )


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    params: tuple[Param, ...]
    enqueue: tuple[dict[str, Any], ...] = ()  # Optuna param dicts, ready for enqueue_trial
    families: dict[str, tuple[Param, ...]] = dataclasses.field(default_factory=dict)

    def sample(self, trial, **set_by_tune: Any) -> TrainConfig:
        """A TrainConfig from the trial's suggestions plus tune's model, epochs and seed; with
        families, the trial's family and its epochs, at most tune's `epochs`."""
        values = {p.name: p.suggest(trial) for p in self.params}
        if self.families:
            model = trial.suggest_categorical("model", list(self.families))
            cap = set_by_tune.pop("epochs")
            for p in self.families[model]:
                values[p.name] = (p.capped(cap) if p.name == "epochs" else p).suggest(trial)
            set_by_tune["model"] = model
        return TrainConfig(**values, **set_by_tune)

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

    def check_model(self, model: str) -> None:
        """Refuse a space that searches what `model` ignores: its trials would differ only in
        values that change nothing (the CNNs have fixed layers)."""
        ignored = [name for name in self.searched if name in FCN_ONLY and model != "fcn"]
        if ignored:
            raise SpaceError(
                f"{self.path.name}: searches {', '.join(ignored)}, which "
                f"--model {model} ignores (only fcn uses it); use "
                "search_spaces/cnn.yaml or study_cnn.yaml, or remove it"
            )


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate one search-space file; every problem is a one-line SpaceError."""
    import yaml

    path = Path(path)
    where = path.name
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpaceError(
            f"{path}: no such search-space file; see search_spaces/ for the shipped ones"
        ) from None
    except IsADirectoryError:
        raise SpaceError(
            f"{path}: is a folder; give one search-space file, such as search_spaces/fcn.yaml"
        ) from None
    except UnicodeDecodeError as e:
        raise SpaceError(
            f"{where}: not UTF-8 text (byte {e.start}); a search space is a "
            "YAML file saved as UTF-8"
        ) from None
    except OSError as e:
        raise SpaceError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError(f"{where}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(f"{where}: must be a non-empty mapping of train parameters to specs")
    starts = raw.pop("enqueue", [])
    families = _families(where, raw.pop("model")) if "model" in raw else {}
    params = tuple(_param(where, str(name), spec) for name, spec in raw.items())
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
        raise SpaceError(f"{where}: enqueue: must be a list of parameter mappings")
    enqueue = tuple(_start(where, i, start, params, families) for i, start in enumerate(starts, 1))
    space = SearchSpace(path, params, enqueue, families)
    for family in families:
        space.check_model(family)
    return space


def _families(where: str, raw: Any) -> dict[str, tuple[Param, ...]]:
    """`model:` as families, each a mapping of its own params (prefixed `<family>.`) that
    gives its `epochs`."""
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(
            f"{where}: model: is set by tune (--model), unless it maps model "
            "families to their parameters, as search_spaces/frontier.yaml does"
        )
    families = {}
    for family, own in raw.items():
        if family not in MODELS:
            raise SpaceError(f"{where}: model: unknown family {family!r}; use {', '.join(MODELS)}")
        if not isinstance(own, dict) or "epochs" not in own:
            raise SpaceError(
                f"{where}: model: {family}: must map its parameters, its epochs "
                "among them (a number or a range: the frontier weighs time)"
            )
        families[family] = tuple(
            _param(f"{where}: model: {family}", str(name), spec, prefix=f"{family}.")
            for name, spec in own.items()
        )
        for p in families[family]:
            if p.name in FCN_ONLY and family != "fcn":
                raise SpaceError(
                    f"{where}: model: {family}: searches {p.name}, which "
                    f"{family} ignores (only fcn uses it)"
                )
    return families


def _start(
    where: str,
    index: int,
    start: Any,
    params: tuple[Param, ...],
    families: dict[str, tuple[Param, ...]],
) -> dict[str, Any]:
    """One enqueued configuration as Optuna params, each value checked against its spec."""

    def fail(message: str) -> SpaceError:
        return SpaceError(f"{where}: enqueue #{index}: {message}")

    if not isinstance(start, dict) or not start:
        raise fail("must be a non-empty mapping of searched parameters to values")
    out: dict[str, Any] = {}
    if families:
        start = dict(start)
        family = start.pop("model", None)
        if family not in families:
            raise fail(
                f"model: {family!r} is not one of this space's families "
                f"({', '.join(families)}); a start point names its family"
            )
        out["model"] = family
        params = (*params, *families[family])
    by_name = {p.name: p for p in params if p.kind != "fixed"}
    for name, value in start.items():
        param = by_name.get(name)
        if param is None:
            raise fail(f"{name} is not a searched parameter of this space")
        s = param.spec
        if param.kind == "layers":
            sizes = value if isinstance(value, list) else []
            ok = (
                sizes
                and s["depth"][0] <= len(sizes) <= s["depth"][1]
                and all(
                    isinstance(w, int) and s["width"]["low"] <= w <= s["width"]["high"]
                    for w in sizes
                )
            )
            if not ok:
                raise fail(
                    f"hidden: {value!r} is outside depth {s['depth']} or widths "
                    f"[{s['width']['low']}, {s['width']['high']}]"
                )
            out[f"{param.prefix}n_layers"] = len(sizes)
            out.update({f"{param.prefix}width_{i}": w for i, w in enumerate(sizes, 1)})
            continue
        if param.kind == "categorical":
            if name == "hidden" and isinstance(value, list):
                value = ",".join(map(str, value))
            ok = value in s["choices"]
        else:
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and s["low"] <= value <= s["high"]
            )
        if not ok:
            raise fail(f"{name}: {value!r} is outside the space")
        out[param.prefix + name] = value
    return out


def _param(where: str, name: str, spec: Any, prefix: str = "") -> Param:
    def fail(message: str) -> SpaceError:
        return SpaceError(f"{where}: {name}: {message}")

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
        raise fail(f"unknown type {kind!r}; use one of {', '.join(TYPES)}")
    unknown = set(spec) - SPEC_KEYS[kind]
    if unknown:
        raise fail(
            f"unknown key(s) {', '.join(sorted(unknown))} for type {kind}; "
            f"allowed: {', '.join(sorted(SPEC_KEYS[kind]))}"
        )
    if kind in ("float", "int"):
        spec = _range(fail, spec, kind)
        _check_values(fail, name, [spec["low"], spec["high"]])
    elif kind == "categorical":
        spec = _categorical(fail, name, spec)
    elif kind == "layers":
        spec = _layers(fail, name, spec)
    else:
        if "value" not in spec:
            raise fail("a fixed parameter needs a value")
        _check_values(fail, name, [spec["value"]])
        spec = {"value": spec["value"]}
    if name == "epochs" and kind in ("float", "layers"):
        raise fail(f"type {kind} cannot give a number of epochs; use int, categorical or fixed")
    return Param(name, kind, spec, prefix)


def _categorical(fail, name: str, spec: dict) -> dict:
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
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
        and 1 <= depth[0] <= depth[1]
    ):
        raise fail("depth must be [low, high] with integers 1 <= low <= high")
    width = spec.get("width")
    if not isinstance(width, dict) or set(width) - {"low", "high", "log", "step"}:
        raise fail("width must be a mapping with low, high and optional log / step")
    width = _range(lambda m: fail(f"width: {m}"), {**width, "type": "int"}, "int")
    if width["low"] < 1 or width["high"] > MAX_WIDTH:
        raise fail(f"width: must be within [1, {MAX_WIDTH}] (train's limit on --hidden)")
    return {"depth": depth, "width": width}


def _range(fail, spec: dict, kind: str) -> dict:
    number = int if kind == "int" else (int, float)
    low, high, log, step = (
        spec.get("low"),
        spec.get("high"),
        spec.get("log", False),
        spec.get("step"),
    )
    for key, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, number) or not math.isfinite(value):
            raise fail(
                f"{key} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}"
            )
    assert low is not None and high is not None  # the loop above refused anything else
    if low > high:
        raise fail(f"low ({low}) is greater than high ({high})")
    if not isinstance(log, bool):
        raise fail(f"log must be true or false, got {log!r}")
    if log and low <= 0:
        raise fail(f"log scale needs low > 0, got {low}")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, number) or step <= 0:
            raise fail(f"step must be a positive {'integer' if kind == 'int' else 'number'}")
        if log:
            raise fail("step and log cannot be combined (Optuna samples one or the other)")
    return {"low": low, "high": high, "log": log, "step": step}


def _check_values(fail, name: str, values: list) -> None:
    """Each value must make a valid TrainConfig: catches 'lbfgs', dropout 1.5, lr -1 ..."""
    for value in values:
        try:
            dataclasses.replace(TrainConfig(), **{name: value})
        except ConfigError as e:
            raise fail(f"value {value!r} is invalid: {e}") from None
        except TypeError:
            raise fail(f"value {value!r} has the wrong type") from None
