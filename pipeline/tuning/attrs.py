"""What a tune trial records in the study storage, named once: its MLflow runs and its worker.

Whoever closes a dead worker's trial reads these (tuning/recovery.py), and so does the champion's
registration (tuning/champion.py), possibly in another process on another machine.
"""

STATE_FILE = "model_state.pt"  # each completed trial's weights, to rebuild the champion later
RUN_ID_ATTR = "mlflow_run_id"
PARENT_RUN_ID_ATTR = "mlflow_parent_run_id"  # the worker's run: closed when the worker dies
RETRY_OF_ATTR = "retry_of"  # number of the trial whose dead worker this trial runs again
FAIL_REASON_ATTR = "fail_reason"
WORKER_ATTR = "worker"  # host:pid of the process that ran the trial
WORKER_START_ATTR = "worker_start"  # its start time, so a reused pid is not taken for it
