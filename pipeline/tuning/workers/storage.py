"""Where a study lives: an RDB URL or a journal file, opened once and checked before any write.

`make_storage(url, ...)` opens it (the study-wide trial cap and heartbeats for RDB storages),
refusing first what cannot keep a study (an in-memory SQLite database, a malformed URL, a file
that is not a database: core/databases.py); `check_storage(settings)` also refuses a study of
the same name that `tune` cannot continue (tuning/workers/resume.py).
Database errors are one line (UserError); `lost_storage` finds the database error behind a
failure mid-study. Every line names a storage without its password (core/credentials.py), and
`refuse_logged_password` stops `tune` under `mlflow run`, which has logged the URL already.
"""

from __future__ import annotations

import os
import random
import sys
import time
import warnings
from pathlib import Path

import optuna

from pipeline.core import databases, interrupt
from pipeline.core.credentials import password, without_password
from pipeline.core.errors import UserError, first_line
from pipeline.tracking.lifecycle import adopted
from pipeline.tuning.tune_settings import TuneSettings
from pipeline.tuning.workers.optuna_private import CappedRDBStorage, fresh_trial
from pipeline.tuning.workers.recovery import StaleTrialHandler, claim
from pipeline.tuning.workers.resume import check_resumable

RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
# Where each database's own clients read a password from, so that no URL has to hold it.
PASSWORD_SOURCES = {
    "postgresql": "PGPASSWORD, a password file (~/.pgpass, or the one PGPASSFILE names) or a "
    "service file entry (PGSERVICE)",
    "mysql": "an option file named in the URL (?read_default_file=~/.my.cnf, its [client] "
    "password)",
}


class ClaimsTrials(optuna.storages.BaseStorage):
    """A storage whose trials name the process that took them, as it takes them: a fresh trial
    in its creation (CappedRDBStorage's `claim`, JournalStorage's template), a queued one in
    the same store write as its start (a stop request waits for both)."""

    @interrupt.store_write
    def set_trial_state_values(self, trial_id, state, values=None) -> bool:
        # a mixin: super() is the concrete storage of each class below, never BaseStorage
        taken = super().set_trial_state_values(trial_id, state, values)  # type: ignore[safe-super]
        if taken and state == optuna.trial.TrialState.RUNNING:  # Optuna pops a queued trial
            for key, value in claim().items():
                self.set_trial_user_attr(trial_id, key, value)
        return taken


class ClaimingJournalStorage(ClaimsTrials, optuna.storages.JournalStorage):
    def create_new_trial(self, study_id, template_trial=None) -> int:
        # One journal entry: the trial and its attrs land together.
        return super().create_new_trial(study_id, template_trial or fresh_trial(claim()))


class WorkerStorage(ClaimsTrials, CappedRDBStorage):
    """Optuna's RDB storage plus what cooperating workers need: an exact study-wide trial cap,
    trials that name their worker from the start, and heartbeats that outlive a database
    restart."""

    def record_heartbeat(self, trial_id: int) -> None:
        # Runs in Optuna's heartbeat thread, which an exception would end silently, and the
        # trial would then look dead. A missed beat while the database restarts is harmless:
        # the grace period spans several beats.
        try:
            super().record_heartbeat(trial_id)
        except Exception as e:
            print(
                f"warning: heartbeat skipped ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                file=sys.stderr,
            )


def make_storage(
    url: str,
    heartbeat: int | None = None,
    grace_period: int | None = None,
    max_trials: int | None = None,
) -> optuna.storages.BaseStorage:
    """An RDB URL (sqlite:///, postgresql://, mysql+pymysql://) or a journal file path.

    With `heartbeat`, running trials record a heartbeat that often; a trial silent for
    `grace_period` seconds is failed and retried once (RDB storages only: Optuna's journal
    storage has no heartbeat).
    """
    if "://" not in url:
        if Path(url).suffix in (".db", ".sqlite", ".sqlite3"):
            raise UserError(
                f"storage {url}: looks like an SQLite file but has no scheme; "
                f"write sqlite:///{url} (or a .log path for a journal file)"
            )
        if max_trials is not None:
            raise UserError(
                f"storage {url}: total_trials needs an RDB storage (sqlite:///..., "
                "postgresql://...) that counts trials for all workers at once"
            )
        return journal_storage(url)
    scheme = url.split("://")[0].split("+")[0]
    if scheme not in RDB_SCHEMES:
        raise UserError(
            f"storage {without_password(url)}: unknown scheme {scheme!r}; use "
            "sqlite:///FILE, postgresql://USER:PW@HOST/DB, mysql+pymysql://... "
            "or a journal file path"
        )
    why = databases.problem(url)  # in memory (the study gone at exit), malformed, not a file
    if why:
        raise UserError(f"storage {without_password(url)}: {why}")
    engine_kwargs = {}
    if scheme != "sqlite":
        # pre-ping: a pooled connection that a database restart closed is replaced on checkout;
        # connect_timeout: an unreachable host is an error within seconds, not minutes.
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    with warnings.catch_warnings():  # heartbeats and their callback are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return open_rdb(
            url,
            engine_kwargs=engine_kwargs,
            max_trials=max_trials,
            heartbeat_interval=heartbeat,
            grace_period=grace_period if heartbeat else None,
            heartbeat_stale_trial_callback=(StaleTrialHandler(grace_period) if heartbeat else None),
        )


def open_rdb(url: str, **kwargs) -> WorkerStorage:
    attempts = 5
    for attempt in range(1, attempts + 1):
        try:
            return WorkerStorage(url, claim=claim, **kwargs)
        except Exception as e:
            if not lost_creation_race(e):  # bad driver, unreachable host, bad credentials...
                raise UserError(
                    f"storage {without_password(url)}: cannot be opened "
                    f"({type(e).__name__}: {first_line(e)})"
                ) from None
            if attempt == attempts:
                raise
            time.sleep(random.uniform(0.05, 0.3) * attempt)  # de-synchronize the next try
    raise AssertionError("unreachable")


def lost_creation_race(error: Exception) -> bool:
    """Workers started together on a fresh database race to create Optuna's tables, then to
    stamp its alembic version; a loser finds each step done on a later try. Seen on PostgreSQL:
    "duplicate key ... alembic_version" (IntegrityError) and, when both CREATE TABLE at once,
    'relation "studies" already exists' (ProgrammingError); MySQL says "Table ... already
    exists" (OperationalError)."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    return isinstance(error, IntegrityError) or (
        isinstance(error, (ProgrammingError, OperationalError)) and "already exists" in str(error)
    )


def journal_storage(path: str) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend

    try:
        return ClaimingJournalStorage(JournalFileBackend(path))
    except Exception as e:  # a missing folder, a file that is not a journal
        raise UserError(
            f"storage {path}: cannot be opened as a journal file "
            f"({type(e).__name__}: {first_line(e)})"
        ) from None


def check_storage(settings: TuneSettings) -> optuna.storages.BaseStorage:
    """Open the storage and refuse a study of this name that tune cannot continue (other
    objectives or directions than `settings.objectives`, a parameter of another kind:
    tuning/workers/resume.py); creates no study."""
    storage = make_storage(
        settings.storage, settings.heartbeat, settings.grace_period, settings.total_trials
    )
    try:
        existing = optuna.load_study(study_name=settings.study_name, storage=storage)
    except KeyError:
        return storage
    where = f"study {settings.study_name!r} in {without_password(settings.storage)}"
    check_resumable(existing, settings, where)
    return storage


def refuse_logged_password(url: str) -> None:
    """Under `mlflow run`, a storage URL holding a password is refused (one line, exit 2).

    MLflow has created its run, logged every -P value as a run parameter and printed the
    command line with them before our command starts (mlflow/projects/utils.py `_create_run`,
    backend/local.py), so nothing of ours can keep that copy out: the line says how to pass the
    password instead, and which run holds it. Our own command creates nothing first."""
    if not adopted() or password(url) is None:
        return
    run_id = os.environ["MLFLOW_RUN_ID"]
    scheme = url.split("://")[0].split("+")[0]
    source = PASSWORD_SOURCES.get(scheme, "the database client's own environment or files")
    raise UserError(
        f"storage {without_password(url)}: mlflow run logs and prints its -P values, "
        f"password included: leave the password out of the URL and give it "
        f"through {source}; then delete run {run_id}, whose parameter storage "
        f"holds it (mlflow runs delete --run-id {run_id}, then mlflow gc)"
    )


def lost_storage(error: BaseException) -> BaseException | None:
    """The database error behind `error`, when the storage went away mid-study, else None.

    The whole chain is searched: when the database is gone, Optuna 5.0's `_run_trial` can fail
    again in its own `finally` block and raise an UnboundLocalError whose context holds the real
    error (optuna/optuna#5280)."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, (StorageInternalError, SQLAlchemyError)):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None
