"""The table runs of `replicate`: one nested run per table of the study, under the top-level run.

They are created up front with the client (the trainings, in other processes, hang under them),
and each is closed FINISHED with its figure, Markdown, metrics and runs.json as soon as its last
variant is trained. A table still open when `replicate` stops ends as tracking/lifecycle.py ends
a run: KILLED on Ctrl-C or SIGTERM, FAILED on an error, with the tag `end_reason`. Like every
tracked run they name their owner process, so a later command closes them if this one dies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
import numpy as np
from mlflow.entities import Metric
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from pipeline.core.metrics import TEST_ACC, VAL_ACC
from pipeline.replication.experiments import TABLES, VARIANTS, Table
from pipeline.replication.replicate_settings import ReplicateSettings
from pipeline.replication.report import figures, text
from pipeline.replication.report.inputs import ReportInput, SeedRun, final_values
from pipeline.tracking import lifecycle
from pipeline.tracking.lifecycle import END_REASON


def summary_metrics(runs: dict[str, list[SeedRun]], keys) -> dict[str, float]:
    """val_acc / test_acc mean (and std, with two seeds or more) over seeds, per variant."""
    out = {}
    for key in keys:
        for name in (VAL_ACC, TEST_ACC):
            values = final_values(runs[key], name)
            out[f"{name}_mean.{key}"] = float(np.mean(values))
            if len(values) > 1:
                out[f"{name}_std.{key}"] = float(np.std(values, ddof=1))
    return out


class TableRuns:
    """The open table runs of one replicate call, closed as their variants finish."""

    def __init__(
        self,
        settings: ReplicateSettings,
        experiment_id: str,
        top_run_id: str,
        seeds: list[int],
        train_size: int,
    ):
        self.settings, self.seeds, self.train_size = settings, seeds, train_size
        self.experiment_id, self.top_run_id = experiment_id, top_run_id
        client = mlflow.MlflowClient()
        owner = lifecycle.owner_tags()
        self.run_ids = {
            table.number: client.create_run(
                experiment_id,
                tags={
                    MLFLOW_PARENT_RUN_ID: top_run_id,
                    MLFLOW_RUN_NAME: f"table {table.number}: {table.title}",
                    "replicate_table": str(table.number),
                    **owner,
                },
            ).info.run_id
            for table in TABLES
        }
        self.open = dict(self.run_ids)

    def trained(self, runs: dict[str, list[SeedRun]]) -> None:
        """Close every open table whose variants have all their seeds in `runs`."""
        for table in TABLES:
            if table.number in self.open and all(
                len(runs.get(key, [])) == len(self.seeds) for key in table.variants
            ):
                self.close(table, self.open.pop(table.number), runs)

    def close(self, table: Table, run_id: str, runs: dict[str, list[SeedRun]]) -> None:
        """A table whose variants are all trained: its figure, Markdown, run ids, metrics;
        FINISHED."""
        s = self.settings
        report = ReportInput(
            runs={k: runs[k] for k in table.variants},
            seeds=self.seeds,
            epochs=s.epochs,
            cnn_epochs=s.cnn_epochs,
            quick=s.quick,
            train_size=self.train_size,
            machine="",
        )
        client = mlflow.MlflowClient()
        client.log_figure(run_id, figures.table_figure(report, table), f"table_{table.number}.png")
        client.log_text(run_id, "\n".join(text.table_markdown(report, table)), "table.md")
        client.log_dict(
            run_id,
            {VARIANTS[k].label: {str(r.seed): r.run_id for r in runs[k]} for k in table.variants},
            "runs.json",
        )
        now = int(1000 * time.time())
        client.log_batch(
            run_id,
            metrics=[
                Metric(k, v, now, 0) for k, v in summary_metrics(runs, table.variants).items()
            ],
            synchronous=True,
        )
        client.set_terminated(run_id, "FINISHED")

    @contextmanager
    def ending(self) -> Iterator[TableRuns]:
        """Inside it the tables close as they finish; any still open when it is left by an
        exception end KILLED (Ctrl-C, SIGTERM) or FAILED, with the reason."""
        reason: str | None  # None: an expected end, which outcome() gives only with finished_on
        status, reason = "FAILED", "replicate ended before all of its variants were trained"
        try:
            yield self
        except BaseException as e:
            status, reason = lifecycle.outcome(e)
            raise
        finally:
            client = mlflow.MlflowClient()
            for run_id in self.open.values():
                if reason:
                    client.set_tag(run_id, END_REASON, reason[:500])
                client.set_terminated(run_id, status)
            self.open.clear()
