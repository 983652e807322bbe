"""The one place that uses Optuna's private API: an exact study-wide trial cap.

Optuna's public API cannot refuse a new trial atomically. `MaxTrialsCallback` counts after each
trial ends, so two workers that start together both start the study's last trial; counting
before `study.optimize` races the same way. Optuna numbers a new trial inside
`RDBStorage._create_new_trial` with the study's row locked (SELECT ... FOR UPDATE), and calls
`_get_prepared_new_trial(study_id, template_trial, session)` under that lock: counting there, in
the same transaction, is what makes the cap exact. tests/test_optuna_adapter.py pins what this
relies on (the method, its signature, the ORM models and columns) and fails on an Optuna upgrade
that changes it.
"""

from __future__ import annotations

import optuna
from optuna.storages._rdb import models

# The system attr RetryHeartbeatStaleTrialCallback gives a retry (public, documented).
RETRY_SYSTEM_ATTR = "failed_trial"


class StudyFull(Exception):
    """The study holds `max_trials` trials: this worker starts no new one."""


class CappedRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage that refuses a fresh trial once the study holds `max_trials`."""

    def __init__(self, url: str, max_trials: int | None = None, **kwargs):
        super().__init__(url, **kwargs)
        self.max_trials = max_trials

    def _get_prepared_new_trial(self, study_id, template_trial, session):
        # Queued trials (retries of dead workers' trials, start points) come with a template
        # and are never refused; a retry stands in for its failed trial, so it does not count.
        if self.max_trials is not None and template_trial is None:
            trials = session.query(models.TrialModel).filter(models.TrialModel.study_id == study_id)
            retries = trials.join(models.TrialSystemAttributeModel).filter(
                models.TrialSystemAttributeModel.key == RETRY_SYSTEM_ATTR
            )
            if trials.count() - retries.count() >= self.max_trials:
                raise StudyFull(f"the study holds its {self.max_trials} trials")
        return super()._get_prepared_new_trial(study_id, template_trial, session)
