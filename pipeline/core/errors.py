"""The errors a user can fix: each is one line that says what is wrong and how to fix it.

`python -m pipeline` prints them as `error: ...` and exits with their `exit_code`: 2, or 130 for a
command stopped by Ctrl-C or SIGTERM (pipeline/cli/app.py).
"""

from __future__ import annotations

import reprlib
from typing import Any

# A value quoted in an error stays short, whatever was typed: a 400-digit integer, a list of a
# million entries or a YAML alias bomb's expansion would otherwise become the "one line".
_SHORT = reprlib.Repr()  # Python 3.11's takes no arguments
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 3, 6, 6
_SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 60, 40, 60
QUOTE_LIMIT = 80


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


def quote(value: Any) -> str:
    """`repr(value)`, at most QUOTE_LIMIT characters (reprlib elides the middle of long parts)."""
    text = _SHORT.repr(value)
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 3] + "..."
