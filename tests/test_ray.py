"""`tune --ray ADDRESS --workers N`: one study's workers as tasks on a real Ray cluster.

The cluster is started here as docs/ray.md starts one: a head and two worker nodes, each a `ray
start` on 127.0.0.1 with one CPU (the head none), token authentication on, the workers'
database password and MLflow user in the environment `ray start` runs in. Against it, the
scale-out tests' PostgreSQL and MLflow server (tests/test_scale_out.py): two tasks share a study
under one parent run; a Ray worker process killed -9 mid-trial (Ray runs its task again, the
trial is failed and retried); the driver stopped by SIGTERM (nothing left RUNNING, no task
left). The refusals are checked without a cluster, table-driven.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import psutil
import pytest

from pipeline.tuning.workers.ray_tasks import Cluster, refuse_unshared
from tests.conftest import ROOT
from tests.services import free_port, wait_until
from tests.test_scale_out import (  # noqa: F401 (fixtures)
    MODEL,
    WORKERS,
    Study,
    assert_one_child_run_per_trial,
    mlflow_server,
    postgres,
    study,
)

RAY = Path(sys.executable).parent / "ray"
PORT_OPTIONS = (  # each node its own, or two nodes on one host fight over the defaults
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
)


# With the Ray half of tests/test_what_a_person_sees.py on one xdist worker: one Ray cluster at a
# time.
pytestmark = pytest.mark.xdist_group("ray")


class RayCluster:
    """`ray start --block` processes on 127.0.0.1, each in its own process group (ended with
    it at the end): a head with no CPU, then `workers` nodes of one CPU each."""

    def __init__(self, folder: Path, env: dict[str, str], workers: int = 2):
        self.folder, self.env, self.nodes = folder, env, []
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.start("head", "--head", "--port", str(port), "--num-cpus", "0")
        for i in range(workers):
            worker_ports = [str(20_000 + 1000 * i), str(20_999 + 1000 * i)]
            self.start(
                f"worker-{i}",
                "--address",
                self.address,
                "--num-cpus",
                "1",
                "--min-worker-port",
                worker_ports[0],
                "--max-worker-port",
                worker_ports[1],
            )

    def start(self, name: str, *args: str) -> None:
        log = self.folder / f"ray-{name}.log"
        ports = [a for option in PORT_OPTIONS for a in (option, str(free_port()))]
        node = subprocess.Popen(
            [str(RAY), "start", "--block", "--disable-usage-stats", *args, *ports],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.nodes.append(node)

        def started() -> bool:
            assert node.poll() is None, log.read_text()[-3000:]
            return "Ray runtime started" in log.read_text()

        wait_until(started, f"ray start {name}", timeout=180)

    def session(self) -> Path:
        """The head's session folder: every log and file of this cluster's processes."""
        found = re.search(
            r"(/\S+/session_[^/\s]+)/logs", (self.folder / "ray-head.log").read_text()
        )
        assert found, "no session folder in the head's log"
        return Path(found.group(1))

    def stop(self) -> None:
        """SIGTERM, then after 5 s SIGKILL to every node's process group and to any process of
        theirs that left it: `ray start --block` stops its head gracefully in about 33 s (it
        waits on its nodes), which no test needs."""
        processes = []
        for node in self.nodes:
            with contextlib.suppress(psutil.NoSuchProcess):
                processes += psutil.Process(node.pid).children(recursive=True)
        for node in reversed(self.nodes):
            os.killpg(node.pid, signal.SIGTERM)
        psutil.wait_procs([psutil.Process(n.pid) for n in self.nodes if n.poll() is None], 5)
        for node in self.nodes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait()
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def token_auth(folder: Path) -> dict[str, str]:
    """Ray's token authentication with a token of this cluster's own (as `ray get-auth-token
    --generate` makes one), not whatever ~/.ray/auth_token this machine holds or lacks."""
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory, postgres):  # noqa: F811 (the fixture)
    pytest.importorskip("ray", reason="pip install -r requirements-ray.txt (.ci/run does)")
    folder = tmp_path_factory.mktemp("ray")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        **postgres.env(),  # the secrets live on the nodes, never in Ray (docs/ray.md)
        **WORKERS,
        **token_auth(folder),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    cluster = RayCluster(folder, env)
    yield cluster
    cluster.stop()


def ray_tune(study: Study, cluster: RayCluster, *extra: str) -> subprocess.Popen:  # noqa: F811
    """The driver: `tune --ray ADDRESS --workers 2`, with the driver's own credentials."""
    [driver] = study.start(
        1,
        "--ray",
        cluster.address,
        "--workers",
        "2",
        *extra,
        env={k: cluster.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")},
        stdout=study.folder / "driver.out",
    )
    return driver


def tune_workers_running(cluster: RayCluster) -> list[int]:
    """The pids of this cluster's processes running a task of ours (Ray names them by the task)."""
    found = []
    for node in cluster.nodes:
        try:
            processes = psutil.Process(node.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                if " ".join(process.cmdline()).startswith("ray::tune-worker"):
                    found.append(process.pid)
            except psutil.Error:  # ended meanwhile
                pass
    return found


def champions(study: Study) -> list:  # noqa: F811
    client = mlflow.MlflowClient(study.tracking_uri)
    return [
        v
        for v in client.search_model_versions(f"name = '{MODEL}'")
        if v.tags.get("study_name") == study.name
    ]


@pytest.mark.slow
def test_two_ray_tasks_share_one_study_under_one_parent(study, ray_cluster, postgres):  # noqa: F811
    driver = ray_tune(study, ray_cluster, "--total-trials", "8")
    assert study.finish([driver]) == [0], study.stderr(driver)[-3000:]
    trials = study.trials()
    assert [t.number for t in trials] == list(range(8))
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both tasks ran trials
    runs = assert_one_child_run_per_trial(study)
    [parent] = [r for r in runs if r.data.tags.get("tune_parent") == "true"]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if "trial_number" in r.data.tags]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    [version] = champions(study)  # registered once, by the driver
    assert version.tags["trial_number"] in {str(t.number) for t in trials}
    # Neither password in what the driver printed (the tasks' output included) nor in any
    # file of the cluster: its logs, the runtime environments it unpacked
    output = study.stderr(driver) + (study.folder / "driver.out").read_text()
    kept = [f.read_bytes() for f in ray_cluster.session().rglob("*") if f.is_file()]
    assert kept
    for secret in (postgres.password, WORKERS["MLFLOW_TRACKING_PASSWORD"]):
        assert secret not in output
        assert not [data for data in kept if secret.encode() in data]


@pytest.mark.slow
def test_a_killed_ray_worker_s_trial_is_retried_and_the_study_completes(study, ray_cluster):  # noqa: F811
    driver = ray_tune(study, ray_cluster, "--total-trials", "4", "--epochs", "10")

    def a_trial_mid_way():
        assert driver.poll() is None, study.stderr(driver)[-3000:]
        try:
            trials = study.trials()
        except KeyError:  # no study yet
            return None
        running = [t for t in trials if t.state.name == "RUNNING" and t.intermediate_values]
        return running[0] if running else None

    wait_until(lambda: a_trial_mid_way() is not None, "a trial's first epoch", timeout=300)
    victim = a_trial_mid_way()
    os.kill(int(victim.user_attrs["worker"].rpartition(":")[2]), signal.SIGKILL)
    assert study.finish([driver]) == [0], study.stderr(driver)[-3000:]

    trials = study.trials()
    assert trials[victim.number].state.name == "FAIL"
    [retry] = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert retry.state.name == "COMPLETE" and retry.params == victim.params
    assert len(trials) == 5 and [t.state.name for t in trials].count("COMPLETE") == 4
    runs = assert_one_child_run_per_trial(study)
    by_number = {int(r.data.tags["trial_number"]): r for r in runs if "trial_number" in r.data.tags}
    assert by_number[victim.number].info.status == "KILLED"
    [parent] = [r for r in runs if r.data.tags.get("tune_parent") == "true"]
    assert parent.info.status == "FINISHED"  # a task's death is not the study's
    assert len(champions(study)) == 1


@pytest.mark.slow
def test_the_driver_stopped_by_sigterm_leaves_nothing_running(study, ray_cluster):  # noqa: F811
    driver = ray_tune(study, ray_cluster, "--total-trials", "4", "--epochs", "10")

    def trained_an_epoch() -> bool:
        assert driver.poll() is None, study.stderr(driver)[-3000:]
        try:
            return any(t.intermediate_values for t in study.trials())
        except KeyError:
            return False

    wait_until(trained_an_epoch, "a trial's first epoch", timeout=300)
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=120) == 130, study.stderr(driver)[-3000:]
    assert study.stderr(driver).strip().splitlines()[-1].startswith("error: interrupted")
    trials = study.trials()
    assert "RUNNING" not in {t.state.name for t in trials}
    assert "FAIL" in {t.state.name for t in trials}
    runs = study.runs()
    assert "RUNNING" not in {r.info.status for r in runs}
    [parent] = [r for r in runs if r.data.tags.get("tune_parent") == "true"]
    assert parent.info.status == "KILLED"
    wait_until(
        lambda: not tune_workers_running(ray_cluster), "the tasks' processes to end", timeout=60
    )


OTHER_HOSTS = Cluster("10.0.0.5:6379", ("node-a", "node-b"), 8, 4, 0)
SERVER = "https://mlflow.example"
DB = "postgresql://tuner@db.example/optuna"


@pytest.mark.parametrize(
    "storage, tracking, refused",
    [
        ("sqlite:///optuna.db", SERVER, "storage sqlite:///optuna.db: on this machine only"),
        ("journal.log", SERVER, "storage journal.log: on this machine only"),
        ("postgresql://tuner@127.0.0.1/optuna", SERVER, "on this machine only"),
        ("postgresql://tuner:hunter2@db.example/optuna", SERVER, f"storage {DB}: its password"),
        (DB, "sqlite:////tmp/mlflow.db", "MLFLOW_TRACKING_URI sqlite:////tmp/mlflow.db: a "),
        (DB, "/tmp/mlruns", "MLFLOW_TRACKING_URI /tmp/mlruns: a tracking store"),
        (DB, "http://localhost:5000", "on this machine only, which the Ray workers on node-a"),
        (DB, SERVER, None),
    ],
)
def test_nodes_on_other_machines_get_only_what_they_can_reach(storage, tracking, refused):
    from pipeline.core.errors import UserError

    refuse_unshared(Cluster("local", ("node-a",), 2, 2, 0), storage, tracking)  # all here
    if refused is None:
        refuse_unshared(OTHER_HOSTS, storage, tracking)
        return
    with pytest.raises(UserError) as error:
        refuse_unshared(OTHER_HOSTS, storage, tracking)
    assert refused in str(error.value) and "hunter2" not in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_ray_options_are_one_line_before_anything_is_written(command, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    storage = tmp_path / "optuna.db"
    common = ["tune", "--storage", f"sqlite:///{storage}", "--n-trials", "1"]
    silent = f"127.0.0.1:{free_port()}"  # nothing listens there
    cases = [
        (["--ray", "somewhere"], "ray: 'somewhere' is no Ray cluster; use auto, local or"),
        (["--ray", silent], f"ray: nothing answers at {silent}"),
    ]
    for args, line in cases:
        result = command(*common, *args)
        assert result.returncode == 2 and result.stderr.startswith(f"error: {line}"), result
        assert result.stderr.count("\n") == 1
    monkeypatch.setitem(sys.modules, "ray", None)  # as where Ray is not installed
    result = command(*common, "--ray", "local")
    assert result.returncode == 2 and "pip install -r requirements-ray.txt" in result.stderr
    assert not storage.exists() and not (tmp_path / "mlflow.db").exists()
