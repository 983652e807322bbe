"""What a tune trial records in the study storage, named once: its MLflow runs and its worker;
and what the study itself records: its trials' length and its identity.

Whoever closes a dead worker's trial reads these (tuning/workers/recovery.py), and so does the
champion's registration (tuning/registry/champion.py), possibly in another process on another
machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

RUN_ID_ATTR = "mlflow_run_id"
MODEL_ID_ATTR = "mlflow_model_id"  # a completed trial's logged model (registry/logged_models.py)
PARENT_RUN_ID_ATTR = "mlflow_parent_run_id"  # the worker's run: closed when the worker dies
RETRY_OF_ATTR = "retry_of"  # number of the trial whose dead worker this trial runs again
FAIL_REASON_ATTR = "fail_reason"
WORKER_ATTR = "worker"  # host:pid of the process that ran the trial
WORKER_START_ATTR = "worker_start"  # its start time, so a reused pid is not taken for it
# The process that created the trial or took it from the queue, written with that step, before
# the objective names its worker: a process that dies in between leaves a trial that names it.
CLAIMED_BY_ATTR, CLAIMED_START_ATTR = "claimed_by", "claimed_by_start"
EPOCHS_ATTR = "epochs"  # of the study: its trials' length, chosen when it was created
# Of the study: a uuid written when it is created, tagged on its runs, models and versions. A
# study made again under the same name and storage string (a deleted or moved optuna.db, a
# second folder's sqlite:///optuna.db on one tracking server) gets another.
STUDY_ID_ATTR = "study_id"
TRIAL_MODEL_ATTR, TRIAL_EPOCHS_ATTR = "model", "epochs"  # a frontier trial's family and epochs


def completed_value(trial: FrozenTrial) -> float:
    """A completed trial's value in a single-objective study (Optuna's `value` is None for
    the other states)."""
    if trial.value is None:
        raise ValueError(f"trial {trial.number} ({trial.state.name}) has no value")
    return trial.value


# On a trial's MLflow run: its Optuna state (RUNNING, COMPLETE, PRUNED, FAIL) and why it ended so
TRIAL_STATE_TAG, TRIAL_REASON_TAG = "trial_state", "trial_reason"
