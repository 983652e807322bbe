"""The one place that uses Optuna's private API: an exact study-wide trial cap, a new trial
that names the process that created it in the same transaction, and the logger of Optuna's
report of a failed trial.

Optuna's public API cannot refuse a new trial atomically. `MaxTrialsCallback` counts after each
trial ends, so two workers that start together both start the study's last trial; counting
before `study.optimize` races the same way. Optuna numbers a new trial inside
`RDBStorage._create_new_trial` with the study's row locked (SELECT ... FOR UPDATE), and calls
`_get_prepared_new_trial(study_id, template_trial, session)` under that lock: counting there, in
the same transaction, is what makes the cap exact. tests/test_optuna_adapter.py pins what this
relies on (the method, its signature, the ORM models and columns) and fails on an Optuna upgrade
that changes it.

Optuna's `_CachedStorage` (which wraps every RDB storage a study uses) creates a trial through
the private `_create_new_trial`, not the public `create_new_trial`: a fresh trial gets a RUNNING
template holding `claim()`'s user attrs there, written with the trial's row. A worker killed
right after then leaves a trial that names it (tuning/workers/recovery.py), not an anonymous one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import optuna
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from pipeline.core import interrupt

# The system attr RetryHeartbeatStaleTrialCallback gives a retry (public, documented).
RETRY_SYSTEM_ATTR = "failed_trial"


# Where Optuna's `_log_failed_trial` reports a failed trial: its params, then the traceback.
FAILED_TRIAL_LOGGER = "optuna.study._optimize"


def _not_a_stop(record: logging.LogRecord) -> bool:
    if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
        return False
    # the report's second record, "Trial N failed with value None."
    return not (interrupt.requested() and " failed with value " in record.getMessage())


def quiet_stopped_trials() -> None:
    """Drop Optuna's report of a trial failed by a stop request (two warnings: the trial's
    params and a traceback of the stop, 28 lines; its value): the command's one line says it."""
    logger = logging.getLogger(FAILED_TRIAL_LOGGER)
    if _not_a_stop not in logger.filters:
        logger.addFilter(_not_a_stop)


class StudyFull(Exception):
    """The study holds `max_trials` trials: this worker starts no new one."""


def fresh_trial(user_attrs: dict[str, Any]) -> FrozenTrial:
    """The template of a fresh RUNNING trial holding `user_attrs` (public API)."""
    return FrozenTrial(
        number=-1,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=datetime.now(),
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs=user_attrs,
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )


class CappedRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage that refuses a fresh trial once the study holds `max_trials`, and
    writes `claim()` (user attrs) into each fresh trial as it is created."""

    def __init__(
        self,
        url: str,
        max_trials: int | None = None,
        claim: Callable[[], dict[str, Any]] | None = None,
        **kwargs,
    ):
        super().__init__(url, **kwargs)
        self.max_trials, self.claim = max_trials, claim

    def _create_new_trial(self, study_id, template_trial=None):
        if template_trial is None and self.claim is not None:
            template_trial = fresh_trial(self.claim())
        return super()._create_new_trial(study_id, template_trial)

    def _get_prepared_new_trial(self, study_id, template_trial, session):
        # Queued trials (retries of dead workers' trials, start points) come with a WAITING
        # template and are never refused; a retry stands in for its failed trial, so it does
        # not count. A fresh trial comes with none, or with a RUNNING one (`claim`).
        fresh = template_trial is None or template_trial.state == TrialState.RUNNING
        if self.max_trials is not None and fresh:
            trials = session.query(models.TrialModel).filter(models.TrialModel.study_id == study_id)
            retries = trials.join(models.TrialSystemAttributeModel).filter(
                models.TrialSystemAttributeModel.key == RETRY_SYSTEM_ATTR
            )
            if trials.count() - retries.count() >= self.max_trials:
                raise StudyFull(f"the study holds its {self.max_trials} trials")
        return super()._get_prepared_new_trial(study_id, template_trial, session)
