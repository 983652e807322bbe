"""The command line: one command per MLproject entry point, plus the dashboard
(`python -m pipeline --help`).

Each command's options are generated from its options class (pipeline/cli/command_settings.py names
them), so the CLI, MLproject and the logged parameters cannot drift apart. Heavy libraries
(torch, mlflow, optuna) are imported inside the commands, so `--help` and argument errors answer
at once. Every user error ends as one line on stderr (`error: ...`) and exit code 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from pipeline.cli import commands
from pipeline.cli.build import add_command
from pipeline.cli.command_settings import COMMANDS
from pipeline.cli.dashboard import dashboard
from pipeline.cli.tune import tune
from pipeline.core.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train, tune and compare PyTorch networks on FashionMNIST, tracked in MLflow.",
)

RUN: dict[str, Callable[[Any], None]] = {
    "prepare": commands.prepare,
    "train": commands.train,
    "tune": tune,
    "evaluate": commands.evaluate,
    "replicate": commands.replicate,
    "dashboard": dashboard,
    "predict": commands.predict,
}
for _name, _options in COMMANDS.items():
    add_command(app, _name, _options, RUN[_name])


def main() -> None:
    """Entry point: typer in non-standalone mode, so every error becomes one line."""
    from pipeline.core import interrupt

    # `kill`, a CI timeout, `docker stop`, Ctrl-C, a closed terminal: end runs KILLED
    interrupt.install()
    parent = os.environ.pop(interrupt.PARENT_VARIABLE, "")  # not for our own children
    if parent.isdigit():  # a `tune --workers` helper: ends when its main worker dies
        interrupt.follow_parent(int(parent))
    elif os.environ.get("MLFLOW_RUN_ID"):  # started by `mlflow run`: die with it, not after it
        interrupt.follow_parent()
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as e:  # usage errors: bad option, bad type, bad choice
        if not e.format_message():  # no command: typer has shown the help, which says it all
            sys.exit(2)
        fail(f"{e.format_message()} (see --help)", 2)
    except UserError as e:
        if e.exit_code == 130 and quiet_helper(parent):
            sys.exit(130)
        fail(str(e), e.exit_code)
    if code == 130 and not quiet_helper(
        parent
    ):  # typer turns KeyboardInterrupt (a stop request above) into exit 130
        # only a command that imported mlflow can have had runs to close
        runs = "; MLflow runs in progress ended KILLED" if "mlflow" in sys.modules else ""
        print(f"error: interrupted{runs}", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


def quiet_helper(parent: str) -> bool:
    """A `tune --workers` helper stopped while its main worker lives prints nothing: its main
    worker stopped it, and says so in its one line (or reports the helper's exit)."""
    return parent.isdigit() and os.getppid() == int(parent)


def fail(message: str, code: int) -> None:
    """One line on stderr and the exit code. Under `mlflow run`, whose run exists before our
    command checks anything (MLflow then ends it FAILED), the line also goes on that run as its
    `end_reason`, so the UI says why."""
    print(f"error: {message}", file=sys.stderr)
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id and code == 2:
        try:
            import mlflow

            from pipeline.tracking.tags import END_REASON

            mlflow.MlflowClient().set_tag(run_id, END_REASON, f"error: {message}"[:500])
        except Exception:  # a store that is itself the problem: the line above says enough
            pass
    sys.exit(code)
