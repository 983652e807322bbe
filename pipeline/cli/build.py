"""typer commands generated from an options class: one typer option per field definition.

typer reads a command's parameters from `inspect.signature`; the generated function carries a
`__signature__` whose parameters are `Annotated[type, typer.Option(...)]`, made from each
field's kind, default, choices and help (pipeline/core/options.py). The command builds the
options object from the options given on the command line (`options.build`, which validates
it, and fills the rest from a preset such as train's --recipe, or the defaults) and hands it to
`run`. Option names may be spelled with underscores too (`--batch_size`): that is how
`mlflow run -P batch_size=64` passes a parameter its MLproject entry point does not declare.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum, StrEnum
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

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

    def command(ctx: typer.Context, **typed: Any) -> None:
        given = {
            key: value.value if isinstance(value, Enum) else value
            for key, value in typed.items()
            # typer carries its own copy of click: its ParameterSource, compared by name
            if getattr(ctx.get_parameter_source(key), "name", "") != "DEFAULT"
        }
        run(options.build(cls, given))

    # typer reads the parameters through inspect.signature, which honours __signature__
    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [context, *(parameter(o) for o in options.of(cls))]
    )
    command.__doc__, command.__name__ = run.__doc__, name
    app.command(name, cls=Underscores)(command)


class Underscores(TyperCommand):
    """Reads `--batch_size` as `--batch-size` (values are left as they are)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, [dashed(arg) for arg in args])


def dashed(arg: str) -> str:
    if not arg.startswith("--"):
        return arg
    name, equals, value = arg.partition("=")
    return name.replace("_", "-") + equals + value


def parameter(option: Option) -> inspect.Parameter:
    """One typer parameter from one option definition."""
    kind, default = option.kind, option.default
    annotation: Any
    if kind == "preset":  # a str checked by options.build: one line listing the names
        annotation, info = str, typer.Option(help=option.full_help(), show_default=False)
    elif kind == "choice":
        # an enum made at run time from the option (mypy wants a literal name, a new type)
        annotation = StrEnum(  # type: ignore[misc, no-redef]
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
