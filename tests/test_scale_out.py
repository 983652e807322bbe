"""Many workers on one study: a real PostgreSQL, a real `mlflow server`, real worker processes.

Each test starts `python -m pipeline tune` processes that share a PostgreSQL storage and a study
name, as users on many machines do, then checks the study and the runs they leave: trials
numbered once, one child run per trial, nothing left RUNNING, even when a worker is killed -9 or
the database restarts. Trials are tiny (one epoch of a narrow FCN) so a test takes seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import optuna
import pytest

from tests.conftest import with_this_checkout
from tests.services import MlflowServer, Postgres, postgres_bin, wait_until

pytestmark = pytest.mark.slow

SPACE = """
lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
optimizer: {type: categorical, choices: [adam, sgd]}
hidden: {type: layers, depth: [1, 1], width: {low: 8, high: 32, log: true}}
batch_size: 512
"""
HEARTBEAT, GRACE = 1, 4  # seconds; production defaults are 60 and 180


@pytest.fixture(scope="module")
def postgres():
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries not found in /usr/lib/postgresql/*/bin "
                    "(apt-get install postgresql; .ci/run installs it)")
    server = Postgres(bin_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()


@dataclass
class Study:
    """One study on the shared services: start its workers, read its trials and runs."""

    name: str
    folder: Path
    storage: str
    tracking_uri: str
    args: list[str]

    logs: dict[int, Path] = field(default_factory=dict)  # worker pid -> its stderr
    _storage: optuna.storages.RDBStorage | None = None

    def start(self, n: int, *extra: str) -> list[subprocess.Popen]:
        """N workers, each the same `tune` command a user would start on one machine."""
        # A clean MLflow environment: what this process's MLflow exported (MLFLOW_EXPERIMENT_ID
        # of an earlier test's experiment, MLFLOW_RUN_ID...) is not the workers' business.
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env = with_this_checkout({**clean, "MLFLOW_TRACKING_URI": self.tracking_uri,
                                  "MLFLOW_EXPERIMENT_NAME": self.name, "OMP_NUM_THREADS": "1"})
        workers = []
        for _ in range(n):
            err = self.folder / f"worker-{len(self.logs)}.err"
            worker = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "tune", *self.args, *extra],
                cwd=self.folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=open(err, "w"))
            self.logs[worker.pid] = err
            workers.append(worker)
        return workers

    def finish(self, workers: list[subprocess.Popen]) -> list[int]:
        return [w.wait(timeout=300) for w in workers]

    def stderr(self, worker: subprocess.Popen) -> str:
        return self.logs[worker.pid].read_text()

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        # One engine for every poll: a storage per call opens a connection pool per call, and
        # polling five times a second used up PostgreSQL's 100 connections ("too many clients").
        # Pre-ping replaces the pool's connections that a server restart has closed.
        if self._storage is None:
            self._storage = optuna.storages.RDBStorage(
                self.storage, engine_kwargs={"pool_pre_ping": True})
        return optuna.load_study(study_name=self.name, storage=self._storage).trials

    def runs(self) -> list[mlflow.entities.Run]:
        client = mlflow.MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(self.name)
        return client.search_runs([experiment.experiment_id], max_results=1000)


@pytest.fixture
def study(request, tmp_path, postgres, mlflow_server, data_dir) -> Study:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    name = request.node.name.replace("test_", "")[:60]
    args = ["--model", "fcn", "--space", str(space), "--epochs", "1", "--n-trials", "0",
            "--timeout", "0", "--study-name", name, "--storage", postgres.url, "--seed", "0",
            "--pruner", "none", "--heartbeat", str(HEARTBEAT), "--grace-period", str(GRACE),
            "--data-dir", str(data_dir), "--workers", "1"]  # each a separate worker
    return Study(name, tmp_path, postgres.url, mlflow_server.url, args)


def assert_one_child_run_per_trial(study: Study) -> list[mlflow.entities.Run]:
    runs = study.runs()
    assert "RUNNING" not in {r.info.status for r in runs}
    parents = {r.info.run_id for r in runs if r.data.tags.get("tune_parent") == "true"}
    children = [r for r in runs if "trial_number" in r.data.tags]
    trials = study.trials()
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == \
        [t.number for t in trials]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] in parents
        assert child.data.tags["study_name"] == study.name
    by_number = {int(c.data.tags["trial_number"]): c for c in children}
    for t in trials:
        assert t.user_attrs["mlflow_run_id"] == by_number[t.number].info.run_id
    return runs


def test_three_workers_share_one_study(study):
    workers = study.start(3, "--total-trials", "12")
    codes = study.finish(workers)
    assert codes == [0, 0, 0], [study.stderr(w)[-2000:] for w in workers]
    trials = study.trials()
    assert [t.number for t in trials] == list(range(12))  # exactly the trials asked for
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 12  # no config twice
    runs = assert_one_child_run_per_trial(study)
    parents = [r for r in runs if r.data.tags.get("tune_parent") == "true"]
    assert len(parents) == 3 and {p.info.status for p in parents} == {"FINISHED"}
    children = [r for r in runs if "trial_number" in r.data.tags]
    assert len({c.data.tags["mlflow.parentRunId"] for c in children}) >= 2  # work was shared


def test_a_killed_worker_s_trial_fails_is_retried_and_its_runs_are_closed(study):
    # A slow victim (30 epochs a trial) so that it is surely killed in the middle of a trial.
    [victim] = study.start(1, "--total-trials", "4", "--epochs", "30")

    def reported_an_epoch() -> bool:
        assert victim.poll() is None, study.stderr(victim)[-2000:]
        try:
            return any(t.intermediate_values for t in study.trials())
        except KeyError:  # the study does not exist yet
            return False

    wait_until(reported_an_epoch, "the victim's first epoch", timeout=300)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    [killed] = [t for t in study.trials() if t.state.name == "RUNNING"]

    survivors = study.start(2, "--total-trials", "4")
    assert study.finish(survivors) == [0, 0], [study.stderr(w)[-2000:] for w in survivors]
    trials = study.trials()
    assert trials[killed.number].state.name == "FAIL"
    [retry] = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert retry.state.name == "COMPLETE" and retry.params == killed.params
    assert len(trials) == 5  # the 4 asked for and the retry of the killed one
    assert [t.state.name for t in trials].count("COMPLETE") == 4  # the study completed them

    runs = assert_one_child_run_per_trial(study)
    by_number = {int(r.data.tags["trial_number"]): r for r in runs
                 if "trial_number" in r.data.tags}
    killed_run = by_number[killed.number]
    assert killed_run.info.status == "KILLED"
    assert killed_run.data.tags["trial_state"] == "FAIL"
    # The survivors run on the victim's host: they see its pid gone, no grace period needed.
    assert "on this host has died" in killed_run.data.tags["trial_reason"]
    assert by_number[retry.number].data.tags["retry_of"] == str(killed.number)
    victim_parent = killed_run.data.tags["mlflow.parentRunId"]
    assert mlflow.MlflowClient(study.tracking_uri).get_run(victim_parent).info.status == "KILLED"


def test_a_database_restart_loses_no_completed_trial(study, postgres):
    workers = study.start(3, "--total-trials", "8")

    def completed() -> dict[int, float]:
        try:
            return {t.number: t.value for t in study.trials() if t.state.name == "COMPLETE"}
        except KeyError:
            return {}

    wait_until(lambda: len(completed()) >= 2, "2 completed trials", timeout=300)
    before = completed()
    postgres.restart()
    codes = study.finish(workers)
    for worker, code in zip(workers, codes):
        # A worker rides out the restart (pre-ping reconnects) or ends with one clear line.
        last = study.stderr(worker).strip().splitlines()[-1]
        assert code == 0 or (code == 2 and last.startswith("error: storage")
                             and "run the same command again" in last), last
    if any(codes):  # resume, as the error says
        [resumed] = study.start(1, "--total-trials", "8")
        assert study.finish([resumed]) == [0], study.stderr(resumed)[-2000:]
    after = {t.number: t for t in study.trials()}
    assert all(after[n].state.name == "COMPLETE" and after[n].value == v
               for n, v in before.items())
    assert {t.state.name for t in after.values()} <= {"COMPLETE", "FAIL"}
    fresh = [t for t in after.values() if "retry_of" not in t.user_attrs]
    assert len(fresh) == 8
    assert "RUNNING" not in {r.info.status for r in study.runs()}
