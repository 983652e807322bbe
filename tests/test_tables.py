"""replicate's table runs: nested under the top run, and ended KILLED or FAILED with the reason
when replicate stops before their variants are trained (no training here)."""

import mlflow
import pytest

from pipeline.core import interrupt
from pipeline.replication.experiments import TABLES
from pipeline.replication.replicate_settings import ReplicateSettings
from pipeline.replication.tables import TableRuns


@pytest.mark.parametrize(
    "error, status, reason",
    [
        (interrupt.Interrupted("stopped by signal SIGTERM"), "KILLED", "stopped by signal SIGTERM"),
        (RuntimeError("disk full\nmore"), "FAILED", "RuntimeError: disk full"),
    ],
)
def test_open_tables_end_with_the_reason(tracking_env, error, status, reason):
    mlflow.set_experiment("tests")
    with mlflow.start_run() as top:
        tables = TableRuns(
            ReplicateSettings.build(quick=True),
            top.info.experiment_id,
            top.info.run_id,
            [0, 1],
            100,
        )
        with pytest.raises(type(error)), tables.ending():
            raise error
    client = mlflow.MlflowClient()
    runs = [client.get_run(run_id) for run_id in tables.run_ids.values()]
    assert len(runs) == len(TABLES)
    for run in runs:
        assert run.info.status == status
        assert run.data.tags["end_reason"] == reason
        assert run.data.tags["mlflow.parentRunId"] == top.info.run_id
        assert run.data.tags["owner_pid"]
