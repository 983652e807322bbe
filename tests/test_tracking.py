"""A tracked run's life: its end status and reason, orphans of dead processes, the experiment."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import mlflow
import pytest

from pipeline.core import interrupt
from pipeline.core.errors import UserError
from pipeline.tracking import lifecycle, orphans, store
from tests.conftest import ROOT, with_this_checkout


def the_run(name: str):
    (run,) = mlflow.search_runs(
        experiment_names=["tests"], filter_string=f"run_name = '{name}'", output_format="list"
    )
    return run


@pytest.mark.parametrize(
    "error, status, reason",
    [
        (None, "FINISHED", None),
        (ValueError("bad\nsecond line"), "FAILED", "ValueError: bad"),
        (KeyboardInterrupt(), "KILLED", "interrupted (Ctrl-C)"),
        (interrupt.Interrupted("stopped by signal SIGTERM"), "KILLED", "stopped by signal SIGTERM"),
    ],
)
def test_a_tracked_run_ends_with_its_status_and_reason(error, status, reason, tracking_env):
    store.configure()

    def body():
        with lifecycle.tracked_run("life"):
            if error is not None:
                raise error

    if error is None:
        body()
    else:
        with pytest.raises(type(error)):
            body()
    run = the_run("life")
    assert run.info.status == status
    assert run.data.tags.get(lifecycle.END_REASON) == reason
    assert run.data.tags[orphans.PID_TAG] == str(os.getpid())
    assert mlflow.active_run() is None


def test_an_expected_exception_ends_the_run_finished(tracking_env):
    class Pruned(Exception):
        pass

    store.configure()
    with pytest.raises(Pruned), lifecycle.tracked_run("pruned", finished_on=(Pruned,)):
        raise Pruned()
    assert the_run("pruned").info.status == "FINISHED"


def test_a_run_left_running_by_a_killed_process_is_closed_by_the_next_command(tracking_env):
    store.configure()
    code = (
        "import sys, time\nfrom pipeline.tracking import lifecycle, store\nstore.configure()\n"
        "with lifecycle.tracked_run('orphan'):\n    print('started', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=with_this_checkout(tracking_env),
    )
    try:
        assert proc.stdout.readline().strip() == "started"
    finally:
        proc.kill()  # kill -9: nothing in the process can close its run
        proc.wait()
    assert the_run("orphan").info.status == "RUNNING"
    with lifecycle.tracked_run("alive"):  # a live run of this process is left alone
        store.configure()
        assert the_run("alive").info.status == "RUNNING"
    run = the_run("orphan")
    assert run.info.status == "KILLED"
    assert f"its process {proc.pid}" in run.data.tags[lifecycle.END_REASON]


def test_runs_of_other_hosts_or_reused_pids_are_judged_correctly(tracking_env):
    store.configure()
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name("tests").experiment_id
    other_host = client.create_run(
        experiment, tags={orphans.HOST_TAG: "another-machine", orphans.PID_TAG: "1"}
    ).info.run_id
    reused = client.create_run(
        experiment,
        tags={
            orphans.HOST_TAG: os.uname().nodename,
            orphans.PID_TAG: str(os.getpid()),
            orphans.START_TAG: "1",
        },
    ).info.run_id  # this pid, but started at another time
    assert orphans.alive(os.getpid(), orphans.process_start(os.getpid()))
    closed = orphans.close_orphans()
    assert closed == [reused]
    assert client.get_run(other_host).info.status == "RUNNING"


def test_a_process_start_is_read_since_boot_and_unknown_for_no_process():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        start = orphans.process_start(child.pid)
        # the kernel's own record, field 22 of /proc/PID/stat: clock ticks since boot
        ticks = open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[19]
        assert float(start) == pytest.approx(int(ticks) / os.sysconf("SC_CLK_TCK"), abs=1e-6)
        assert orphans.alive(child.pid, start)
        assert not orphans.alive(child.pid, f"{float(start) - 1:.2f}")  # the pid, reused
    finally:
        child.communicate(b"")
    assert not orphans.alive(child.pid, start)
    assert orphans.process_start(4194304) == ""  # above any pid_max: no such process


def test_commands_starting_together_close_the_same_orphans_without_an_error(tracking_env, capfd):
    # Tune workers started together all close a dead worker's runs at once; MLflow's set_tag
    # then failed the later writers of end_reason with a UNIQUE constraint (CI, stop 18).
    store.configure()
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name("tests").experiment_id
    dead = {orphans.HOST_TAG: os.uname().nodename, orphans.PID_TAG: "4194304"}  # > pid_max
    runs = [client.create_run(experiment, tags=dead).info.run_id for _ in range(3)]
    start, errors = threading.Barrier(6), []

    def command_start():
        start.wait()
        try:
            orphans.close_orphans()
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=command_start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert "warning" not in capfd.readouterr().err
    for run_id in runs:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert "its process 4194304" in run.data.tags[lifecycle.END_REASON]


def test_a_stale_experiment_id_in_the_shell_is_one_line(tracking_env, monkeypatch):
    store.configure()
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "12345")
    with pytest.raises(UserError, match="MLFLOW_EXPERIMENT_ID=12345 names no experiment"):
        store.configure()
    other = mlflow.create_experiment("other")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", other)
    with pytest.raises(UserError, match="unset one of them"):
        store.configure()
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    store.configure()  # the id alone chooses the experiment
    with lifecycle.tracked_run("there") as run:
        assert run.info.experiment_id == other


def test_every_experiment_we_run_in_opens_on_training_runs(tracking_env):
    """MLflow 3's UI reads mlflow.experimentKind: without it, an experiment opens on the GenAI
    view. New experiments and old ones without the tag get it; a kind someone chose stays."""
    client = mlflow.MlflowClient()
    old = client.create_experiment("made-before")  # an experiment of an earlier version
    chosen = client.create_experiment("chosen", tags={lifecycle.EXPERIMENT_KIND_TAG: "other"})
    store.configure()
    with lifecycle.tracked_run("in the default experiment"):
        pass
    for experiment_id in (old, chosen):
        mlflow.set_experiment(experiment_id=experiment_id)
        with lifecycle.tracked_run("a run"):
            pass
    kinds = {e.name: e.tags.get(lifecycle.EXPERIMENT_KIND_TAG) for e in client.search_experiments()}
    assert kinds["made-before"] == kinds["tests"] == "custom_model_development"
    assert kinds["chosen"] == "other"


def test_a_training_run_has_mlflow_system_metrics_unless_turned_off(
    tracking_env, tiny_data, tiny_config, monkeypatch
):
    import time

    from pipeline.tracking import log as tracklog

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    store.configure()

    def until_sampled(end) -> None:
        """Training waits (at its first epoch's end) until MLflow's sampler has logged."""
        if end.epoch > 1:
            return
        run_id = mlflow.active_run().info.run_id
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(k.startswith("system/") for k in mlflow.get_run(run_id).data.metrics):
                return
            time.sleep(0.1)

    sampled = tracklog.train_run(
        tiny_config, tiny_data, confusion=False, callbacks=(until_sampled,)
    )
    metrics = mlflow.get_run(sampled.run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        metrics
    )
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    sampling = []

    def sampler_running(end) -> None:
        from mlflow.tracking import fluent

        sampling.append(mlflow.active_run().info.run_id in fluent.run_id_to_system_metrics_monitor)

    tracklog.train_run(tiny_config, tiny_data, confusion=False, callbacks=(sampler_running,))
    assert sampling == [False, False]
