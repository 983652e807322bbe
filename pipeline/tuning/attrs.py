"""What a tune trial records in the study storage, named once: its MLflow runs and its worker;
and what the study itself records: its trials' length and its identity.

Whoever closes a dead worker's trial reads these (tuning/workers/recovery.py), and so does the
champion's registration (tuning/registry/champion.py), possibly in another process on another
machine.
"""

RUN_ID_ATTR = "mlflow_run_id"
MODEL_ID_ATTR = "mlflow_model_id"  # a completed trial's logged model (registry/logged_models.py)
PARENT_RUN_ID_ATTR = "mlflow_parent_run_id"  # the worker's run: closed when the worker dies
RETRY_OF_ATTR = "retry_of"  # number of the trial whose dead worker this trial runs again
FAIL_REASON_ATTR = "fail_reason"
WORKER_ATTR = "worker"  # host:pid of the process that ran the trial
WORKER_START_ATTR = "worker_start"  # its start time, so a reused pid is not taken for it
EPOCHS_ATTR = "epochs"  # of the study: its trials' length, chosen when it was created
# Of the study: a uuid written when it is created, tagged on its runs, models and versions. A
# study made again under the same name and storage string (a deleted or moved optuna.db, a
# second folder's sqlite:///optuna.db on one tracking server) gets another.
STUDY_ID_ATTR = "study_id"
TRIAL_MODEL_ATTR, TRIAL_EPOCHS_ATTR = "model", "epochs"  # a frontier trial's family and epochs
