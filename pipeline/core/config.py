"""Typed configuration: the choices every entry point shares, and one frozen `TrainConfig`.

Built once at the edge (the CLI, MLproject parameters, a search-space sample) and passed down.
This module imports nothing heavy, so `--help` and argument errors stay instant.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

MODELS = ("fcn", "study_cnn", "fast_cnn")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
MAX_SHIFT = 8  # pixels of the 28: more moves garments out of the image
INITS = ("default", "normal", "xavier_normal", "xavier_uniform", "kaiming_uniform", "kaiming_normal")


class UserError(Exception):
    """Something the user can fix; its message is one line that says what is wrong and how."""


def first_line(e: BaseException | str) -> str:
    """The gist of a library's multi-line message, short enough for one line of error."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    name = type(e).__name__ if isinstance(e, BaseException) else "unknown error"
    return (lines[0] if lines else name)[:200]


class ConfigError(UserError, ValueError):
    """A bad parameter value; its message names the parameter and the allowed values."""


def parse_hidden(value: str | list | tuple) -> tuple[int, ...]:
    """'300,200' (or [300, 200]) -> (300, 200); an empty string means no hidden layer."""
    parts = value if isinstance(value, (list, tuple)) else [
        p for p in str(value).replace(" ", "").split(",") if p]
    try:
        sizes = tuple(int(p) for p in parts)
        if all(s >= 1 for s in sizes):
            return sizes
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"hidden: {value!r} is not a list of positive layer sizes; "
                      "use comma-separated integers such as 300,200")


def parse_bool(value: str | bool, name: str) -> bool:
    """'true' / 'false' (also 1/0, yes/no), as MLproject parameters and YAML spell them."""
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name}: {value!r} must be true or false")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the study's base FCN (784-300-200-10, SGD 0.02, batch 512)."""

    model: str = "fcn"
    hidden: tuple[int, ...] = (300, 200)  # FCN only: the study's base widths
    optimizer: str = "sgd"
    lr: float = 0.02
    epochs: int = 50
    batch_size: int = 512  # the study's training batch
    dropout: float = 0.0  # probability of zeroing a hidden unit; 0 turns dropout off
    init: str = "default"  # "default" keeps PyTorch's own (Kaiming-uniform with a=sqrt(5)) init
    batch_norm: bool = False
    weight_decay: float = 0.0
    # "constant" is the study's; "cosine": 1 warm-up epoch, then cosine decay to 0;
    # "onecycle": linear rise over the first 20% of steps, then linear decay to 0
    schedule: str = "constant"
    label_smoothing: float = 0.0  # training loss only; val/test losses stay plain cross-entropy
    augment: bool = False  # random horizontal flips and shifts of up to `max_shift` pixels
    max_shift: int = 2  # with augment: 0 flips only (measured best for short CNN runs)
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "hidden", parse_hidden(self.hidden))
        object.__setattr__(self, "batch_norm", parse_bool(self.batch_norm, "batch_norm"))
        object.__setattr__(self, "augment", parse_bool(self.augment, "augment"))
        _check_choice("model", self.model, MODELS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("init", self.init, INITS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr: {self.lr!r} must be a number > 0, such as 0.02")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ConfigError(f"dropout: {self.dropout!r} must be in [0, 1), such as 0.1")
        if not (isinstance(self.label_smoothing, (int, float))
                and 0 <= self.label_smoothing < 1):
            raise ConfigError(f"label_smoothing: {self.label_smoothing!r} must be in [0, 1), "
                              "such as 0.1")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay: {self.weight_decay!r} must be >= 0")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: {value!r} must be an integer >= 1")
        if isinstance(self.max_shift, bool) or not isinstance(self.max_shift, int) \
                or not 0 <= self.max_shift <= MAX_SHIFT:
            raise ConfigError(f"max_shift: {self.max_shift!r} must be an integer from 0 to "
                              f"{MAX_SHIFT} (pixels)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed: {self.seed!r} must be an integer >= 0")

    def to_dict(self) -> dict:
        """Flat, loggable form: `hidden` as '300,200' so MLflow shows it as one readable param."""
        d = dataclasses.asdict(self)
        d["hidden"] = ",".join(str(h) for h in self.hidden)
        for name in ("batch_norm", "augment"):
            d[name] = str(d[name]).lower()  # as MLproject parameters spell it
        return d

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
