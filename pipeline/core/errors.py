"""The errors a user can fix: each is one line that says what is wrong and how to fix it.

`python -m pipeline` prints them as `error: ...` and exits with their `exit_code`: 2, or 130 for a
command stopped by Ctrl-C or SIGTERM (pipeline/cli/app.py).
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; its message is one line that says what is wrong and how."""

    exit_code = 2


class Stopped(UserError):
    """A command stopped by Ctrl-C or SIGTERM, with what it left and how to go on."""

    exit_code = 130  # the shell's code for a process ended by SIGINT


class ConfigError(UserError, ValueError):
    """A bad parameter value; its message names the parameter and the allowed values."""


def first_line(e: BaseException | str) -> str:
    """The gist of a library's multi-line message, short enough for one line of error."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    name = type(e).__name__ if isinstance(e, BaseException) else "unknown error"
    return (lines[0] if lines else name)[:200]
