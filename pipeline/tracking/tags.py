"""Run tags written safely while other processes write the same run.

`MlflowClient.set_tag` on an SQL store looks the tag up and then inserts it: two processes
setting the same new key at once (two workers closing one dead worker's runs, say) make the
second fail with a UNIQUE-constraint error. `log_batch` writes tags with MLflow's own retry on
exactly that conflict, so every tag written from more than one process goes through here.
"""

from __future__ import annotations

import mlflow
from mlflow.entities import RunTag

END_REASON = "end_reason"  # why a run ended, on every run that did not simply finish


def set_tags(run_id: str, tags: dict[str, str], client: mlflow.MlflowClient | None = None) -> None:
    """Set (or overwrite) `tags` on run `run_id`, tolerating a concurrent writer of the same
    keys."""
    client = client or mlflow.MlflowClient()
    client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])
