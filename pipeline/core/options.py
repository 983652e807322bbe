"""One definition per option: name, kind, default, accepted values and help, in one dataclass field.

Each entry point's options are a frozen dataclass whose fields are made by the helpers below
(`integer`, `number`, `choice`, `text`, `path`, `switch`, `flag`, `widths`, `paths`, `preset`).
Everything else derives from those fields: the command line (pipeline/cli/build.py), MLproject
(`python -m pipeline.cli.mlproject`), the arguments of `tune --workers` helpers (`to_argv`) and
the parameters runs log (`params`). A class's `__post_init__` calls `check(self)`, which
normalizes and validates every field against its definition, so a bad value is one line of
ConfigError naming the option wherever the object is built (CLI, MLproject, a search space).
A `preset` names a set of values for the other options (train's --recipe): `build` fills those
not given from it.

Standard library only: the core uses it, and `--help` must stay instant.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError, quote

KINDS = ("int", "float", "choice", "str", "path", "switch", "flag", "widths", "paths", "preset")


@dataclass(frozen=True)
class Option:
    kind: str  # one of KINDS
    help: str
    default: Any = dataclasses.MISSING  # MISSING: required (a positional argument)
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded (lr > 0)
    high_open: bool = False  # high itself excluded (dropout < 1)
    choices: tuple[str, ...] = ()
    most: int | None = None  # widths: at most this many sizes
    zero: str = ""  # what 0 stands for ("no limit", "3 seeds"): said in help and errors
    hidden: bool = False  # plumbing between our own processes: not in --help, MLproject, params
    log: bool | str = True  # logged as a run parameter; a str: under that name
    presets: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    name: str = ""  # filled in by `of`

    @property
    def flag(self) -> str:
        return f"--{self.name.replace('_', '-')}"

    @property
    def param_name(self) -> str | None:
        """The name of the logged run parameter, None when it is not logged."""
        if self.hidden or not self.log:
            return None
        return self.log if isinstance(self.log, str) else self.name

    def accepted(self) -> str:
        """What the option accepts, in words: 'an integer from 1 to 10000', 'a number > 0'."""
        if self.kind in ("choice", "preset"):
            return f"one of {', '.join(self.choices)}"
        if self.kind == "widths":
            return f"up to {self.most} comma-separated sizes from 1 to {self.high}"
        if self.kind not in ("int", "float"):
            return ""
        what = "an integer" if self.kind == "int" else "a number"
        low, high = self.low, self.high
        if self.low is not None and self.high is not None:
            if self.kind == "int":
                return f"{what} from {low} to {high}"
            return (
                f"{what} in {'(' if self.low_open else '['}{low}, {high}"
                f"{')' if self.high_open else ']'}"
            )
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{what} {'<' if self.high_open else '<='} {high}"
        return what

    def full_help(self) -> str:
        """The help text with the accepted values and the meaning of 0, as --help shows it (no
        square brackets: typer's rich help reads them as markup)."""
        accepted = self.accepted() if self.kind in ("int", "float", "widths", "preset") else ""
        notes = "; ".join(
            n for n in (accepted and f"Accepts {accepted}", self.zero and f"0: {self.zero}") if n
        )
        return f"{self.help} {notes}." if notes else self.help


def _field(kind: str, default: Any, help: str, **spec: Any) -> Any:
    option = Option(kind, help, default, **spec)
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata={"option": option})
    return dataclasses.field(default=default, metadata={"option": option})


def integer(default: int, help: str, *, low: int, high: int, **more: Any) -> Any:
    """An integer option within [low, high]; `more`: Option's zero (what 0 means, when it means
    something), hidden, log."""
    return _field("int", default, help, low=low, high=high, **more)


def number(default: float, help: str, **bounds: Any) -> Any:
    """A finite float option within its bounds: Option's low, high, low_open, high_open (the
    bound excluded), and zero and log."""
    return _field("float", default, help, **bounds)


def choice(default: str, help: str, choices: tuple[str, ...], log: bool | str = True) -> Any:
    return _field("choice", default, help, choices=tuple(choices), log=log)


def text(default: str, help: str, *, hidden: bool = False, log: bool | str = True) -> Any:
    return _field("str", default, help, hidden=hidden, log=log)


def path(default: str, help: str, *, log: bool | str = True) -> Any:
    return _field("path", Path(default), help, log=log)


def switch(default: bool, help: str, log: bool | str = True) -> Any:
    """A boolean typed as true|false (MLproject parameters and YAML spell it so)."""
    return _field("switch", default, help, log=log)


def flag(help: str, log: bool | str = True) -> Any:
    """A boolean typed as a bare --flag (off when absent)."""
    return _field("flag", False, help, log=log)


def widths(default: tuple[int, ...], help: str, *, most: int, high: int) -> Any:
    """Layer sizes typed as '300,200': at most `most` of them, each from 1 to `high`."""
    return _field("widths", tuple(default), help, low=1, high=high, most=most)


def preset(presets: Mapping[str, Any], help: str) -> Any:
    """A name from `presets` (objects whose attributes are the other options' values): the
    options not given take its values (empty: none); see `build`. Not logged as a parameter:
    a run records it as it says (train: a tag)."""
    return _field("preset", "", help, choices=tuple(presets), presets=presets, log=False)


def paths(help: str) -> Any:
    """One or more paths, typed as positional arguments (required)."""
    return _field("paths", dataclasses.MISSING, help, log=False)


def of(cls: Any) -> tuple[Option, ...]:
    """The options of a settings class (or instance), in field order, a preset first (the
    others override its values)."""
    fields = [f for f in dataclasses.fields(cls) if "option" in f.metadata]
    found = [dataclasses.replace(f.metadata["option"], name=f.name) for f in fields]
    return tuple(sorted(found, key=lambda o: o.kind != "preset"))


def filled_by_preset(cls: Any) -> tuple[Option, ...]:
    """The options a preset of `cls` gives values to (none without a preset)."""
    some = [value for o in of(cls) for value in o.presets.values()][:1]
    return tuple(o for o in of(cls) if some and o.kind != "preset" and hasattr(some[0], o.name))


def build(cls: type, given: Mapping[str, Any]) -> Any:
    """`cls` from the options given: those not given take the named preset's values, if one is
    named, else their defaults. The one way to make a class that has a preset."""
    values = dict(given)
    for option in (o for o in of(cls) if o.kind == "preset"):
        preset = option.presets.get(values.get(option.name, ""))  # unknown: check() says so
        if preset is not None:
            values = {**{o.name: getattr(preset, o.name) for o in filled_by_preset(cls)}, **values}
    return cls(**values)


def as_text(option: Option, value: Any) -> str:
    """A value as typed on a command line or in MLproject: 300,200 / true / 0.02 / data."""
    if option.kind == "widths":
        return ",".join(str(w) for w in value)
    if option.kind in ("switch", "flag"):
        return "true" if value else "false"
    return str(value)


def check(obj: Any) -> None:
    """Normalize and validate every option field of a frozen dataclass instance, in place."""
    for option in of(obj):
        value = getattr(obj, option.name)
        normal = _check(option, value)
        if normal is not value:
            object.__setattr__(obj, option.name, normal)


def to_argv(obj: Any) -> list[str]:
    """The command-line arguments that give back `obj` (hidden options left out)."""
    argv: list[str] = []
    for option in of(obj):
        value = getattr(obj, option.name)
        if option.hidden or (option.kind == "preset" and not value):
            continue
        if option.kind == "flag":
            argv += [option.flag] if value else []
        elif option.kind == "paths":
            argv += [str(p) for p in value]
        else:
            argv += [option.flag, as_text(option, value)]
    return argv


def params(obj: Any, cls: type | None = None) -> dict[str, Any]:
    """The run parameters of `obj`, by the definitions of `cls` (default: obj's class): widths
    and switches as typed, paths as strings, numbers and flags as they are."""
    out = {}
    for option in of(cls or obj):
        if option.param_name is None:
            continue
        value = getattr(obj, option.name)
        if option.kind in ("widths", "switch", "path"):
            value = as_text(option, value)
        out[option.param_name] = value
    return out


def _check(option: Option, value: Any) -> Any:
    name, kind = option.name, option.kind
    if kind == "switch":
        return parse_bool(value, name)
    if kind == "widths":
        return parse_widths(value, name, option.high, option.most)
    if kind in ("path", "paths"):
        # Path("") is Path("."): an empty path must be refused before it becomes one, else
        # `--data-dir ""` writes its cache into the current folder.
        for p in [value] if kind == "path" else value:
            if not isinstance(p, (str, os.PathLike)) or not os.fspath(p):
                raise ConfigError(
                    f"{name}: {quote(p)} is not a path; name a file or folder (. is this one)"
                )
        return Path(value) if kind == "path" else tuple(Path(p) for p in value)
    if kind == "flag":
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: {quote(value)} must be true or false")
        return value
    if kind in ("str", "choice", "preset"):
        allowed = (*option.choices, "") if kind == "preset" else option.choices  # "": none
        if not isinstance(value, str) or (kind != "str" and value not in allowed):
            raise ConfigError(f"{name}: {quote(value)} is not {option.accepted() or 'a string'}")
        return value
    ok = isinstance(value, int) if kind == "int" else (isinstance(value, (int, float)))
    # finite and within float's range (a 400-digit int is not; NaN compares False)
    ok = ok and not isinstance(value, bool) and abs(value) <= sys.float_info.max
    ok = ok and _within(option, value)
    if not ok:
        zero = f" (0: {option.zero})" if option.zero else ""
        raise ConfigError(f"{name}: {quote(value)} must be {option.accepted()}{zero}")
    return value


def _within(option: Option, value: float) -> bool:
    low, high = option.low, option.high
    return (low is None or (value > low if option.low_open else value >= low)) and (
        high is None or (value < high if option.high_open else value <= high)
    )


def parse_bool(value: str | bool, name: str) -> bool:
    """'true' / 'false' (also 1/0, yes/no), as MLproject parameters and YAML spell them."""
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name}: {quote(value)} must be true or false")


def parse_widths(
    value: str | list | tuple, name: str, high: float | None, most: int | None = None
) -> tuple[int, ...]:
    """'300,200' (or [300, 200]) -> (300, 200): at most `most` sizes from 1 to `high`; empty,
    or an empty entry, is refused: an FCN without hidden layers is not what anyone typing
    --hidden meant."""
    parts = value if isinstance(value, (list, tuple)) else str(value).replace(" ", "").split(",")
    example = "use comma-separated integers such as 300,200"
    if not parts or parts == [""]:
        raise ConfigError(f"{name}: {quote(value)} is empty; {example}")
    if "" in parts:
        raise ConfigError(f"{name}: {quote(value)} has an empty entry; {example}")
    if most is not None and len(parts) > most:
        raise ConfigError(f"{name}: {len(parts)} layers; give at most {most}")
    try:
        sizes = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        sizes = ()
    bad_type = not sizes or any(isinstance(p, (bool, float)) for p in parts)
    if bad_type or not all(1 <= s <= (high or math.inf) for s in sizes):
        limit = f" up to {high}" if high else ""
        what = f"is not a list of positive layer sizes{limit}"
        raise ConfigError(f"{name}: {quote(value)} {what}; {example}")
    return sizes
