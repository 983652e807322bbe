"""Process trees and the ways they end: a child ends with its parent however the parent dies;
a closed terminal or a dropped connection ends a command as SIGTERM does; every command that
opens the store closes the runs of dead processes. Real processes and signals: the process
boundary is the point."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from pipeline.core import interrupt
from pipeline.tracking import orphans
from tests.conftest import ROOT

FOLLOWER = """
import os, sys, time
from pipeline.core import interrupt
interrupt.install()
interrupt.follow_parent(int(os.environ[interrupt.PARENT_VARIABLE]))
try:  # the parent may die while this line is still being written
    print("following", flush=True)
    while True:  # a training loop: check() after each batch
        interrupt.check()
        time.sleep(0.05)
except interrupt.Interrupted as e:
    print(e, flush=True)
"""
PARENT = f"""
import os, signal, subprocess, sys
env = {{**os.environ, {interrupt.PARENT_VARIABLE!r}: str(os.getpid())}}
subprocess.Popen([sys.executable, "-c", {FOLLOWER!r}], env=env, start_new_session=True)
signal.pause()  # killed here
"""


def with_checkout(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def test_a_child_ends_when_its_parent_is_killed_9():
    """The main `tune` killed -9 (or by the OOM killer) left its helpers training under a dead
    parent. The kernel now tells them (PR_SET_PDEATHSIG), as a SIGTERM."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, env=with_checkout()
    )
    assert parent.stdout.readline() == "following\n"  # the child's line, through our pipe
    parent.kill()
    parent.wait()
    # The child holds the pipe's other end: its end of file is the child's end.
    assert parent.stdout.read() == "stopped by signal SIGTERM\n"


def test_a_child_whose_parent_died_before_it_asked_stops_at_once():
    """The parent killed between starting the child and the child's request: the child's parent
    is then init (or a subreaper), not the pid it was given."""
    out = subprocess.run(
        [sys.executable, "-c", FOLLOWER],
        capture_output=True,
        text=True,
        env=with_checkout(**{interrupt.PARENT_VARIABLE: str(dead_pid())}),
        timeout=120,
    )
    assert out.stdout == "following\nstopped by signal SIGTERM\n", out.stderr


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def orphan_run() -> str:
    """A RUNNING run whose owner, a process of this host, is gone (killed -9, say)."""
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("tests") or client.get_experiment(
        client.create_experiment("tests")
    )
    tags = {orphans.HOST_TAG: socket.gethostname(), orphans.PID_TAG: str(dead_pid())}
    return client.create_run(experiment.experiment_id, tags=tags).info.run_id


@pytest.mark.parametrize("command_name", ["evaluate", "predict"])
def test_every_command_that_opens_the_store_closes_dead_owners_runs(
    command, tmp_path, data_dir, command_name
):
    """Even one that then fails: the model it names does not exist."""
    from PIL import Image

    run_id = orphan_run()
    image = tmp_path / "shoe.png"
    Image.new("L", (28, 28)).save(image)
    args = {
        "evaluate": [
            "evaluate",
            "--model-uri",
            "models:/nothing@champion",
            "--data-dir",
            str(data_dir),
        ],
        "predict": ["predict", str(image), "--model-uri", "models:/nothing@champion"],
    }[command_name]
    out = command(*args)
    assert out.returncode == 2 and "not found" in out.stderr
    run = mlflow.get_run(run_id)
    assert run.info.status == "KILLED"
    assert "ended without closing it" in run.data.tags["end_reason"]


def wait_for_metric(name: str, proc: subprocess.Popen, timeout: float = 300):
    """The only run once it has logged `name` (the process must stay alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.returncode
        runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
        if runs and name in runs[0].data.metrics:
            return runs[0]
        time.sleep(0.5)
    raise AssertionError(f"no {name} within {timeout} s")


def close_terminal(proc: subprocess.Popen, terminal: int) -> None:
    os.close(terminal)  # the window closed, the ssh connection dropped: SIGHUP, then EIO


def hang_up_group(proc: subprocess.Popen, terminal: int) -> None:
    os.killpg(proc.pid, signal.SIGHUP)  # as a shell passes on its own hangup to its jobs


def quit_key(proc: subprocess.Popen, terminal: int) -> None:
    os.killpg(proc.pid, signal.SIGQUIT)  # Ctrl-\


@pytest.mark.slow
@pytest.mark.parametrize(
    "end, name",
    [(close_terminal, "SIGHUP"), (hang_up_group, "SIGHUP"), (quit_key, "SIGQUIT")],
    ids=["terminal closed", "SIGHUP to the group", "SIGQUIT"],
)
def test_a_terminal_s_end_stops_train_as_sigterm_does(end, name, tmp_path, tracking_env, data_dir):
    """`train` in a terminal of its own (its controlling tty): the run ends KILLED, exit 130.
    Before, SIGHUP killed it at once and left the run RUNNING."""
    import fcntl
    import pty
    import termios

    mlflow.set_experiment("tests")  # the store exists before this process polls it
    terminal, tty = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "train", "--epochs", "500", "--hidden", "32",
         "--data-dir", str(data_dir)],
        stdin=tty, stdout=tty, stderr=tty, env=tracking_env, cwd=tmp_path,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # the tty becomes its terminal
    )  # fmt: skip
    os.close(tty)
    try:
        run = wait_for_metric("val_acc", proc)
        end(proc, terminal)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            os.close(terminal)
        except OSError:
            pass  # closed by the test case
    ended = mlflow.get_run(run.info.run_id)
    assert ended.info.status == "KILLED"
    assert ended.data.tags["end_reason"] == f"stopped by signal {name}"


@pytest.mark.slow
def test_tune_killed_9_ends_its_helpers_and_the_next_command_closes_the_rest(
    tmp_path, tracking_env, data_dir
):
    """kill -9 of the main `tune --workers 2` while both train: its helper ends at once (its
    trial FAIL, its run KILLED); the main's trial and runs are closed by the next command."""
    import optuna

    from pipeline.tuning.workers import recovery
    from tests.test_end_to_end import SMALL_FCN_SPACE

    space = tmp_path / "small.yaml"
    space.write_text(SMALL_FCN_SPACE)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.storages.RDBStorage(storage)  # the stores exist before this process polls them
    mlflow.MlflowClient().search_experiments()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "tune", "--workers", "2", "--n-trials", "20",
         "--epochs", "20", "--pruner", "none", "--space", str(space), "--storage", storage,
         "--study-name", "kill9", "--data-dir", str(data_dir)],
        env=tracking_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip

    def running_runs() -> dict[str, str]:
        try:
            trials = optuna.load_study(study_name="kill9", storage=storage).trials
        except KeyError:
            return {}
        return {
            t.user_attrs["worker"]: t.user_attrs["mlflow_run_id"]
            for t in trials
            if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
        }

    try:
        deadline = time.monotonic() + 300
        while len(running_runs()) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.returncode
            time.sleep(0.5)
        workers = running_runs()
        proc.kill()
        proc.wait()
        main = f"{socket.gethostname()}:{proc.pid}"
        [(helper, helper_run)] = [(w, r) for w, r in workers.items() if w != main]
        helper_proc = Path(f"/proc/{helper.rsplit(':', 1)[1]}")
        deadline = time.monotonic() + 120
        while helper_proc.exists():
            assert time.monotonic() < deadline, "the helper outlived its killed main worker"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    study = optuna.load_study(study_name="kill9", storage=storage)
    by_worker = {t.user_attrs.get("worker"): t.state.name for t in study.trials}
    assert by_worker[helper] == "FAIL" and by_worker[main] == "RUNNING"
    assert mlflow.get_run(helper_run).info.status == "KILLED"
    # what the next command does on opening the stores
    orphans.close_orphans()
    assert len(recovery.fail_dead_local_trials(study)) == 1
    runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
    assert "RUNNING" not in {r.info.status for r in runs}
    assert "RUNNING" not in {t.state.name for t in study.trials}


def session_processes(sid: int) -> list[str]:
    """The live processes of session `sid` (zombies, waiting for init to reap them, are dead)."""
    ps = subprocess.run(
        ["ps", "-o", "pid=,stat=,args=", "-s", str(sid)], capture_output=True, text=True
    ).stdout.splitlines()
    return [line for line in ps if line.split()[1][0] != "Z"]


@pytest.mark.slow
def test_replicate_killed_9_ends_its_training_processes(tmp_path, tracking_env, data_dir):
    """Its pool workers trained their jobs on under a dead parent, then waited for good on the
    pool's queue. Now each ends its training KILLED and exits."""
    mlflow.MlflowClient().search_experiments()  # the store exists before this process polls it
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "replicate", "--quick", "--workers", "2", "--out",
         "report", "--data-dir", str(data_dir)],
        env=tracking_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip

    def training() -> list:
        runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
        return [r for r in runs if "variant" in r.data.tags and "val_acc" in r.data.metrics]

    try:
        deadline = time.monotonic() + 300
        while len(training()) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.returncode
            time.sleep(0.5)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 120
        while session_processes(proc.pid):
            assert time.monotonic() < deadline, session_processes(proc.pid)
            time.sleep(0.5)
    finally:
        if session_processes(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    trainings = [
        r
        for r in mlflow.search_runs(experiment_names=["tests"], output_format="list")
        if "variant" in r.data.tags
    ]
    # A training the kill caught ends KILLED by its worker's SIGTERM; one that had finished
    # (quick trainings are short: whether any was mid-epoch is the machine's timing) stays so.
    assert {r.info.status for r in trainings} <= {"KILLED", "FINISHED"}
    assert {r.data.tags.get("end_reason") for r in trainings if r.info.status == "KILLED"} <= {
        "stopped by signal SIGTERM"
    }
    orphans.close_orphans()  # the replicate process's own runs, as the next command does
    runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
    assert "RUNNING" not in {r.info.status for r in runs}
