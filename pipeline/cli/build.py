"""typer commands generated from an options class: one typer option per field definition.

typer reads a command's parameters from `inspect.signature`; the generated function carries a
`__signature__` whose parameters are `Annotated[type, typer.Option(...)]`, made from each
field's kind, default, choices and help (pipeline/core/options.py). The command builds the
options object from what was typed (which validates it) and hands it to `run`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum, StrEnum
from typing import Annotated, Any

import typer

from pipeline.core import options
from pipeline.core.options import Option

TYPES = {
    "int": int,
    "float": float,
    "str": str,
    "path": str,  # checked and made a Path by the options class: Path("") would be "."
    "switch": str,
    "flag": bool,
    "widths": str,
    "paths": list[str],
}


def add_command(app: typer.Typer, name: str, cls: type, run: Callable[[Any], None]) -> None:
    """Register `name` on `app`: its options are `cls`'s fields; `run(cls(...))` does the
    work and its docstring is the command's help."""

    def command(**typed: Any) -> None:
        run(
            cls(
                **{
                    key: value.value if isinstance(value, Enum) else value
                    for key, value in typed.items()
                }
            )
        )

    command.__signature__ = inspect.Signature([parameter(o) for o in options.of(cls)])
    command.__doc__, command.__name__ = run.__doc__, name
    app.command(name)(command)


def parameter(option: Option) -> inspect.Parameter:
    """One typer parameter from one option definition."""
    kind, default = option.kind, option.default
    if kind == "choice":
        annotation: Any = StrEnum(
            option.name.title().replace("_", ""), {c: c for c in option.choices}
        )
        default = annotation(default)
        info = typer.Option(help=option.full_help())
    elif kind == "paths":
        annotation, info = TYPES[kind], typer.Argument(help=option.help, show_default=False)
        default = inspect.Parameter.empty
    elif kind == "flag":
        annotation, info = bool, typer.Option(option.flag, help=option.full_help())
    else:
        annotation = TYPES[kind]
        default = options.as_text(option, default) if kind in ("switch", "widths") else default
        metavar = {"switch": "true|false", "path": "PATH"}.get(kind)
        info = typer.Option(help=option.full_help(), metavar=metavar, hidden=option.hidden)
    return inspect.Parameter(
        option.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, info],
    )
