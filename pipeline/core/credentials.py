"""Passwords in URLs (a study storage, MLFLOW_TRACKING_URI): found, left out, put back.

A URL is shown, logged, tagged and handed to another process without its password
(`without_password`): postgresql://tuner:secret@db/optuna is postgresql://tuner@db/optuna
everywhere, the same name whether the password came inline or from the environment, and a
command printed with it runs as it is. The password itself travels only through the environment
(PGPASSWORD, ~/.pgpass, a helper worker's variable). SQLAlchemy's URL parser does the parsing;
the core imports neither MLflow nor Optuna.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError


def _parsed(url: str) -> URL | None:
    """The URL parsed, or None when it is none (a journal file path) or unreadable."""
    if "://" not in url:
        return None
    try:
        return make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return None


# libpq and MySQL's drivers also take the password as a query argument: ?password=, ?passwd=
QUERY_KEYS = ("password", "passwd")


def password(url: str) -> str | None:
    """The password written in `url` (in its user part or its query), or None (an empty one is
    no secret)."""
    parsed = _parsed(url)
    if parsed is None:
        return None
    in_query = [parsed.query[key] for key in QUERY_KEYS if key in parsed.query]
    found = parsed.password or next(iter(in_query), None)
    return (found if isinstance(found, str) else found[0]) if found else None


def without_password(url: str) -> str:
    """`url` with its password left out; a URL without one comes back as written."""
    parsed = _parsed(url)
    if parsed is None:
        # Unreadable but maybe holding credentials: keep only its scheme.
        return url if "@" not in url else f"{url.split('://')[0]}://(unreadable URL)"
    if password(url) is None:
        return url
    # URL.set(password=None) would keep the password: None means "unchanged" there.
    return URL.create(
        parsed.drivername,
        parsed.username,
        None,
        parsed.host,
        parsed.port,
        parsed.database,
        parsed.difference_update_query(QUERY_KEYS).query,
    ).render_as_string(hide_password=False)


def with_password(url: str, secret: str) -> str:
    """`url` (without a password) with `secret` as its password, for this process only."""
    parsed = make_url(url)
    if parsed.username is None:  # a URL shows no password without a user: as a query argument
        return parsed.update_query_dict({"password": secret}).render_as_string(hide_password=False)
    return parsed.set(password=secret).render_as_string(hide_password=False)
