"""Many workers on one study: a real PostgreSQL, a real `mlflow server`, real worker processes.

Each test starts `python -m pipeline tune` processes that share a PostgreSQL storage and a study
name, as users on many machines do, then checks the study and the runs they leave: trials
numbered once, one child run per trial, nothing left RUNNING, even when a worker is killed -9 or
the database restarts. Trials are tiny (one epoch of a narrow FCN) so a test takes seconds.

Both services are secured as docs/scaling-out.md sets them up: PostgreSQL asks for a password
(scram-sha-256; the workers get it from PGPASSWORD) and the MLflow server runs MLflow's
basic-auth app (the workers' user has MANAGE on its study's experiment and on the registered
model, made by the admin with `pipeline.tracking.access`). Nobody else changes anything there,
and after a study no password is anywhere: runs, artifacts, outputs, command lines.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import optuna
import pytest
import requests

from pipeline.tracking.access import grant_workers
from tests.conftest import ROOT, with_this_checkout
from tests.services import MlflowServer, Postgres, credentials, postgres_bin, wait_until

# One xdist worker runs them all (`make test` runs two): one PostgreSQL and MLflow server.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("scale_out")]

SPACE = """
lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
optimizer: {type: categorical, choices: [adam, sgd]}
hidden: {type: layers, depth: [1, 1], width: {low: 8, high: 32, log: true}}
batch_size: 512
"""
HEARTBEAT, GRACE = 1, 4  # seconds; production defaults are 60 and 180
WORKERS = credentials("workers", secrets.token_urlsafe(18))  # the workers' user
MODEL = "fashion-mnist-fcn"  # where every study here registers its champion


@pytest.fixture(scope="module")
def postgres():
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL binaries not found in /usr/lib/postgresql/*/bin "
            "(apt-get install postgresql; .ci/run installs it)"
        )
    server = Postgres(bin_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """The server; this process reads it as the admin (the workers write as WORKERS)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    with pytest.MonkeyPatch.context() as env:
        for key, value in server.admin.items():
            env.setenv(key, value)
        yield server
    server.stop()


@dataclass
class Study:
    """One study on the shared services: start its workers, read its trials and runs."""

    name: str
    folder: Path
    storage: str  # with its password: this process's own reads only
    tracking_uri: str
    args: list[str]
    secrets: dict[str, str]  # the workers' environment: PGPASSWORD and their MLflow user

    logs: dict[int, Path] = field(default_factory=dict)  # worker pid -> its stderr
    _storage: optuna.storages.RDBStorage | None = None

    def env(self, **changes: str | None) -> dict[str, str]:
        """The workers' environment, with `changes` (None: unset)."""
        # A clean MLflow environment: what this process's MLflow exported (MLFLOW_EXPERIMENT_ID
        # of an earlier test's experiment, MLFLOW_RUN_ID, the admin's credentials...) is not
        # the workers' business.
        clean = {
            k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k != "PGPASSWORD"
        }
        env = with_this_checkout(
            {
                **clean,
                **self.secrets,
                "MLFLOW_TRACKING_URI": self.tracking_uri,
                "MLFLOW_EXPERIMENT_NAME": self.name,
                "OMP_NUM_THREADS": "1",
            }
        )
        env.update(changes)
        return {k: v for k, v in env.items() if v is not None}

    def start(
        self,
        n: int,
        *extra: str,
        env: dict[str, str | None] | None = None,
        stdout: Path | None = None,
    ) -> list[subprocess.Popen]:
        """N workers, each the same `tune` command a user would start on one machine."""
        env = self.env(**(env or {}))
        workers = []
        for _ in range(n):
            err = self.folder / f"worker-{len(self.logs)}.err"
            worker = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "tune", *self.args, *extra],
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=open(stdout, "w") if stdout else subprocess.DEVNULL,
                stderr=open(err, "w"),
            )
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
                self.storage, engine_kwargs={"pool_pre_ping": True}
            )
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
    args = [
        "--model",
        "fcn",
        "--space",
        str(space),
        "--epochs",
        "1",
        "--n-trials",
        "0",
        "--timeout",
        "0",
        "--study-name",
        name,
        "--storage",
        postgres.url,
        "--seed",
        "0",
        "--pruner",
        "none",
        "--heartbeat",
        str(HEARTBEAT),
        "--grace-period",
        str(GRACE),
        "--data-dir",
        str(data_dir),
        "--workers",
        "1",
    ]  # each a separate worker
    # The admin's part (docs/scaling-out.md): the workers' user, and MANAGE for it on the
    # study's experiment and on the registered model.
    grant_workers(
        mlflow_server.url,
        WORKERS["MLFLOW_TRACKING_USERNAME"],
        WORKERS["MLFLOW_TRACKING_PASSWORD"],
        name,
        MODEL,
    )
    return Study(
        name, tmp_path, postgres.secret_url, mlflow_server.url, args, {**postgres.env(), **WORKERS}
    )


def assert_one_child_run_per_trial(study: Study) -> list[mlflow.entities.Run]:
    runs = study.runs()
    assert "RUNNING" not in {r.info.status for r in runs}
    parents = {r.info.run_id for r in runs if r.data.tags.get("tune_parent") == "true"}
    children = [r for r in runs if "trial_number" in r.data.tags]
    trials = study.trials()
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == [t.number for t in trials]
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
    # the workers' user registered the study's champion once, though three workers offered it
    client = mlflow.MlflowClient(study.tracking_uri)
    mine = [
        v
        for v in client.search_model_versions(f"name = '{MODEL}'")
        if v.tags.get("study_name") == study.name
    ]
    assert len(mine) == 1 and mine[0].tags["trial_number"] in {str(t.number) for t in trials}
    assert "champion" in client.get_registered_model(MODEL).aliases


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
    by_number = {int(r.data.tags["trial_number"]): r for r in runs if "trial_number" in r.data.tags}
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
        assert code == 0 or (
            code == 2 and last.startswith("error: storage") and "run the same command again" in last
        ), last
    if any(codes):  # resume, as the error says
        [resumed] = study.start(1, "--total-trials", "8")
        assert study.finish([resumed]) == [0], study.stderr(resumed)[-2000:]
    after = {t.number: t for t in study.trials()}
    assert all(after[n].state.name == "COMPLETE" and after[n].value == v for n, v in before.items())
    assert {t.state.name for t in after.values()} <= {"COMPLETE", "FAIL"}
    fresh = [t for t in after.values() if "retry_of" not in t.user_attrs]
    assert len(fresh) == 8
    assert "RUNNING" not in {r.info.status for r in study.runs()}


def test_without_the_workers_credentials_nobody_changes_anything(study, mlflow_server):
    [worker] = study.start(1, "--total-trials", "2")
    assert study.finish([worker]) == [0], study.stderr(worker)[-2000:]
    client = mlflow.MlflowClient(study.tracking_uri)  # as the admin
    experiment_id = client.get_experiment_by_name(study.name).experiment_id

    def state():
        runs = {
            r.info.run_id: (r.info.status, r.info.lifecycle_stage, sorted(r.data.tags))
            for r in study.runs()
        }
        return runs, client.get_registered_model(MODEL).aliases, len(study.trials())

    before = state()
    assert len(before[0]) == 3 and "champion" in before[1]  # a parent, two trials
    some_run = next(iter(before[0]))
    reader = ("reader", secrets.token_urlsafe(18))
    from mlflow.server.auth.client import AuthServiceClient

    AuthServiceClient(study.tracking_uri).create_user(*reader)  # READ, the server's default
    api = f"{study.tracking_uri}/api/2.0/mlflow"
    writes = [
        ("POST", "runs/create", {"experiment_id": experiment_id, "run_name": "intruder"}),
        ("POST", "runs/set-tag", {"run_id": some_run, "key": "intruder", "value": "1"}),
        ("POST", "runs/delete", {"run_id": some_run}),
        ("POST", "registered-models/alias", {"name": MODEL, "alias": "champion", "version": "1"}),
        ("DELETE", "registered-models/alias", {"name": MODEL, "alias": "champion"}),
        ("POST", "experiments/delete", {"experiment_id": experiment_id}),
    ]
    for auth, status in [
        (None, 401),
        ((WORKERS["MLFLOW_TRACKING_USERNAME"], "wrong"), 401),
        (reader, 403),
    ]:
        for method, path, body in writes:
            answer = requests.request(method, f"{api}/{path}", json=body, auth=auth, timeout=60)
            assert answer.status_code == status, (path, auth and auth[0], answer.text[:300])
    anonymous = requests.get(
        f"{api}/experiments/get-by-name", timeout=60, params={"experiment_name": study.name}
    )
    assert anonymous.status_code == 401  # not even a read

    # Workers with a wrong password, or as a user who may only read: one line each, exit 2,
    # before the study or a run is touched.
    for env, status in [
        ({"MLFLOW_TRACKING_PASSWORD": secrets.token_urlsafe(18)}, "401"),
        (credentials(*reader), "403"),
    ]:
        [intruder] = study.start(1, "--total-trials", "4", env=env)
        assert study.finish([intruder]) == [2]
        last = study.stderr(intruder).strip().splitlines()[-1]
        assert last.startswith("error: MLflow tracking server") and status in last, last
        assert env["MLFLOW_TRACKING_PASSWORD"] not in study.stderr(intruder)
    # A user who may write runs but only read the registered model: refused before the study,
    # not at the registration an hour later.
    editor = ("editor", secrets.token_urlsafe(18))
    admin = AuthServiceClient(study.tracking_uri)
    admin.create_user(*editor)
    admin.grant_user_permission(editor[0], "experiment", experiment_id, "MANAGE")
    [worker] = study.start(1, "--total-trials", "4", env=credentials(*editor))
    assert study.finish([worker]) == [2]
    last = study.stderr(worker).strip().splitlines()[-1]
    assert (
        last.startswith("error: MLflow tracking server")
        and f"READ on the registered model '{MODEL}'" in last
    ), last
    assert state() == before


def mlflow_run_tune(
    study: Study, storage: str, data_dir: Path, **env: str | None
) -> subprocess.CompletedProcess:
    """`mlflow run . -e tune` as a worker of `study` (its environment and its settings)."""
    params = {
        "model": "fcn",
        "space": study.folder / "space.yaml",
        "epochs": 1,
        "n_trials": 0,
        "timeout": 0,
        "study_name": study.name,
        "storage": storage,
        "pruner": "none",
        "total_trials": 7,
        "heartbeat": HEARTBEAT,
        "grace_period": GRACE,
        "workers": 1,
        "data_dir": data_dir,
    }
    run_env = study.env(MLFLOW_EXPERIMENT_NAME=None, **env)
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env['PATH']}"
    return subprocess.run(
        [
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "tune",
            "--env-manager",
            "local",
            "--experiment-name",
            study.name,
            *[arg for key, value in params.items() for arg in ("-P", f"{key}={value}")],
        ],
        cwd=study.folder,
        env=run_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_no_password_anywhere_after_a_study(study, postgres, mlflow_server, data_dir):
    hidden = [postgres.password, WORKERS["MLFLOW_TRACKING_PASSWORD"]]
    inline = {"env": {"PGPASSWORD": None}}  # the password only in the URL, as a user may type it
    # tune with the password in its URL (the command line is the user's own)
    [first] = study.start(
        1,
        "--total-trials",
        "2",
        "--storage",
        postgres.secret_url,
        stdout=study.folder / "first.out",
        **inline,
    )
    assert study.finish([first]) == [0], study.stderr(first)[-2000:]
    # tune --workers 2 with it: every other process's command line read while it runs
    [main] = study.start(
        1,
        "--total-trials",
        "5",
        "--workers",
        "2",
        "--storage",
        postgres.secret_url,
        stdout=study.folder / "main.out",
        **inline,
    )
    argv: dict[int, bytes] = {}

    def read_every_command_line() -> bool:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            pid = int(cmdline.parent.name)
            try:
                text = cmdline.read_bytes()
            except OSError:  # ended meanwhile
                continue
            if pid != main.pid and text:
                argv[pid] = text
        return main.poll() is not None

    wait_until(read_every_command_line, "tune --workers 2 to end", timeout=300)
    assert main.returncode == 0, study.stderr(main)[-2000:]
    assert any(b"--helper-of" in a for a in argv.values())  # its helper was seen
    # mlflow run, the password from the environment as docs/scaling-out.md shows it
    run = mlflow_run_tune(study, postgres.url, data_dir)
    assert run.returncode == 0, run.stderr[-3000:]

    assert len([t for t in study.trials() if t.state.name == "COMPLETE"]) == 7
    runs = study.runs()
    parents = [r for r in runs if r.data.tags.get("tune_parent") == "true"]
    assert len(parents) == 3 and {r.data.params["storage"] for r in parents} == {postgres.url}
    outputs = [
        run.stdout,
        run.stderr,
        *(p.read_text() for p in study.folder.glob("*.out")),
        *(p.read_text() for p in study.logs.values()),
    ]
    kept = [p.read_bytes() for p in mlflow_server.folder.rglob("*") if p.is_file()]
    for secret in hidden:
        assert [a for a in argv.values() if secret.encode() in a] == []
        assert [o for o in outputs if secret in o] == []
        for r in runs:
            assert secret not in repr(r.data.params) + repr(r.data.tags), r.info.run_id
        # every byte the server keeps: its store (runs, logged and registered models) and
        # every artifact
        assert not any(secret.encode() in data for data in kept)
        assert not any(secret in repr(t.user_attrs) + repr(t.system_attrs) for t in study.trials())


def test_mlflow_run_refuses_a_storage_password_in_one_line(study, postgres, data_dir):
    run = mlflow_run_tune(study, postgres.secret_url, data_dir)
    assert run.returncode != 0
    [ours] = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert ours.startswith(f"error: storage {postgres.url}: ") and "PGPASSWORD" in ours
    assert postgres.password not in ours
    with pytest.raises(KeyError):  # no study was made
        study.trials()
    # MLflow's own run, which logged the URL before our command started: ended FAILED with
    # the line, and named in it for deletion
    [mlflows] = study.runs()
    assert mlflows.info.status == "FAILED" and mlflows.info.run_id in ours
    assert mlflows.data.tags["end_reason"] == ours
