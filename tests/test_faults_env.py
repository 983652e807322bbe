"""Faults of the environment (docs/operations.md, "Faults: environment and identity"): other
tools' variables left in a user's shell, stores that cannot be one, and commands started
together on a new store.

A stale or foreign value is one line naming its variable, exit 2, and nothing written: no file,
no run touched (the stale run above all), no experiment made.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import mlflow
import pytest

from pipeline.tracking import lifecycle, orphans
from tests.conftest import ROOT, project_run, with_this_checkout

TRAIN = ("train", "--epochs", "1", "--hidden", "8")
NO_RUN = "0123456789abcdef0123456789abcdef"

# (id, environment, expected part of the one line). {name} stands for the id of a run or an
# experiment of the store made by `store` below; {tmp} for the working folder.
CASES = [
    # MLFLOW_RUN_ID: only the run `mlflow run` has just made for this command
    ("run-finished", {"MLFLOW_RUN_ID": "{finished}"}, "is run 'finished', FINISHED already"),
    ("run-nonexistent", {"MLFLOW_RUN_ID": NO_RUN}, f"MLFLOW_RUN_ID={NO_RUN} names no run in"),
    ("run-not-a-project-run", {"MLFLOW_RUN_ID": "{foreign}"}, "`mlflow run` did not start"),
    ("run-of-another-entry-point", {"MLFLOW_RUN_ID": "{of_tune}"}, "-e tune`, not of train"),
    ("run-of-another-process", {"MLFLOW_RUN_ID": "{owned}"}, "is run 'owned' of process 1 on"),
    ("run-with-metrics", {"MLFLOW_RUN_ID": "{used}"}, "holds metrics already"),
    ("run-deleted", {"MLFLOW_RUN_ID": "{deleted}"}, "is a deleted run"),
    (
        "run-of-another-experiment-by-name",
        {"MLFLOW_RUN_ID": "{elsewhere}"},
        "is a run of experiment 'other', not MLFLOW_EXPERIMENT_NAME=tests",
    ),
    (
        "run-of-another-experiment-by-id",
        {"MLFLOW_RUN_ID": "{elsewhere}", "MLFLOW_EXPERIMENT_ID": "{tests}"},
        "not MLFLOW_EXPERIMENT_ID=",
    ),
    (
        "run-without-a-store",
        {"MLFLOW_RUN_ID": "{finished}", "MLFLOW_TRACKING_URI": ""},
        "names no run: there is no tracking store sqlite:///mlflow.db",
    ),
    # the experiment
    (
        "experiment-id-without-a-store",
        {"MLFLOW_EXPERIMENT_ID": "42", "MLFLOW_TRACKING_URI": ""},
        "MLFLOW_EXPERIMENT_ID=42 names no experiment: there is no tracking store",
    ),
    ("experiment-name-deleted", {"MLFLOW_EXPERIMENT_NAME": "gone"}, "MLFLOW_EXPERIMENT_NAME=gone"),
    (
        "experiment-id-deleted",
        {"MLFLOW_EXPERIMENT_ID": "{gone}"},
        "names the deleted experiment 'gone'",
    ),
    # the stores' URIs
    (
        "tracking-uri-not-a-database",
        {"MLFLOW_TRACKING_URI": "sqlite:///notes.txt"},
        "notes.txt is not an SQLite database",
    ),
    (
        "tracking-uri-a-folder",
        {"MLFLOW_TRACKING_URI": "sqlite:///afolder"},
        "afolder is a folder, not a database file",
    ),
    (
        "tracking-uri-missing-folder",
        {"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/nonexistent/dir/m.db"},
        "nonexistent/dir (a typo? create the folder first)",
    ),
    ("tracking-uri-in-memory", {"MLFLOW_TRACKING_URI": "sqlite://"}, "is an in-memory database"),
    (
        "tracking-uri-memory-filename",
        {"MLFLOW_TRACKING_URI": "sqlite:///file:m?mode=memory&uri=true"},
        "is an in-memory database",
    ),
    (
        "tracking-uri-malformed-host",
        {"MLFLOW_TRACKING_URI": "postgresql://u:p@[::1:5432/x"},
        "MLFLOW_TRACKING_URI postgresql://(unreadable URL): is not a valid database URL",
    ),
    (
        "tracking-uri-malformed-port",
        {"MLFLOW_TRACKING_URI": "mysql+pymysql://u@host:port/x"},
        "is not a valid database URL",
    ),
    (
        "registry-uri-missing-folder",
        {"MLFLOW_REGISTRY_URI": "sqlite:///{tmp}/nowhere/registry.db"},
        "MLFLOW_REGISTRY_URI sqlite:///",
    ),
    (
        "registry-uri-not-a-database",
        {"MLFLOW_REGISTRY_URI": "sqlite:///notes.txt"},
        "MLFLOW_REGISTRY_URI sqlite:///notes.txt: notes.txt is not an SQLite database",
    ),
    ("run-context-not-json", {"MLFLOW_RUN_CONTEXT": "team=x"}, "MLFLOW_RUN_CONTEXT='team=x'"),
    ("run-context-a-list", {"MLFLOW_RUN_CONTEXT": "[1]"}, "is not a JSON object of tags"),
]


@pytest.fixture
def store(tmp_path, tracking_env, monkeypatch) -> dict[str, str]:
    """A tracking store in tmp_path/store (the working folder has no mlflow.db) holding the
    runs and experiments the cases name; returns their ids by name."""
    (tmp_path / "store").mkdir()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    ids = {name: client.create_experiment(name) for name in ("tests", "other", "gone")}
    client.delete_experiment(ids["gone"])
    tests = ids["tests"]
    ids["finished"] = project_run(client, tests, "finished")
    client.set_terminated(ids["finished"], "FINISHED")
    ids["foreign"] = client.create_run(tests, run_name="foreign").info.run_id
    ids["of_tune"] = project_run(client, tests, "of-tune", "tune")
    owner = {orphans.HOST_TAG: socket.gethostname(), orphans.PID_TAG: "1"}
    ids["owned"] = project_run(client, tests, "owned", **owner)
    ids["used"] = project_run(client, tests, "used")
    client.log_metric(ids["used"], "val_acc", 0.5)
    ids["deleted"] = project_run(client, tests, "deleted")
    client.delete_run(ids["deleted"])
    ids["elsewhere"] = project_run(client, ids["other"], "elsewhere")
    (tmp_path / "notes.txt").write_text("a user's notes, not a database\n")
    (tmp_path / "afolder").mkdir()
    return ids


def contents(uri: str) -> list:
    """Everything a command could have written to the store: experiments and runs, whole."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = client.search_experiments(view_type=mlflow.entities.ViewType.ALL)
    runs = client.search_runs(
        [e.experiment_id for e in experiments], run_view_type=mlflow.entities.ViewType.ALL
    )
    return [(e.name, e.lifecycle_stage, e.tags) for e in experiments] + [
        (r.info.run_id, r.info.status, r.info.lifecycle_stage, r.data.tags, r.data.metrics)
        for r in runs
    ]


@pytest.mark.parametrize("env, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_other_tools_variables_are_one_line_and_write_nothing(
    env, message, store, command, data_dir, tmp_path
):
    uri = os.environ["MLFLOW_TRACKING_URI"]
    before, files = contents(uri), set(tmp_path.rglob("*"))
    values = {**store, "tmp": str(tmp_path)}
    out = command(
        *TRAIN, "--data-dir", str(data_dir), env={k: v.format(**values) for k, v in env.items()}
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and message.format(**values) in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert set(tmp_path.rglob("*")) == files  # no mlflow.db, no folder, no artifact
    assert contents(uri) == before  # the stale run above all: not renamed, reopened or tagged


def test_the_run_mlflow_run_made_for_this_command_is_adopted(store, monkeypatch):
    client = mlflow.MlflowClient()
    run_id = project_run(client, store["tests"], "made-by-mlflow-run")
    client.log_param(run_id, "lr", "1e-3")  # mlflow run logs the -P values
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", store["tests"])
    monkeypatch.setattr(sys, "argv", [str(ROOT / "pipeline" / "__main__.py"), "train"])
    lifecycle.check_adoptable()
    with lifecycle.tracked_run("trained") as run:
        assert run.info.run_id == run_id
        mlflow.log_metric("val_acc", 0.5)
        lifecycle.check_adoptable()  # now ours: owned by this process
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "trained"


def test_no_command_shows_the_help_without_an_empty_error(command):
    out = command()
    assert out.returncode == 2
    assert "Usage" in out.stdout + out.stderr and "error:" not in out.stderr


# Each process waits after its imports until the test says go, so that both open the new
# store at the same moment; each then starts and ends a run.
TOGETHER = """
import sys
from pipeline.tracking import lifecycle, store
print("ready", flush=True)
sys.stdin.readline()
store.configure()
with lifecycle.tracked_run("together"):
    pass
"""


@pytest.mark.parametrize("round", range(3))
def test_commands_started_together_on_a_new_store_both_work(round, tmp_path, tracking_env):
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    (tmp_path / "new").mkdir()
    env = with_this_checkout({**tracking_env, "MLFLOW_TRACKING_URI": uri})
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", TOGETHER],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout.readline() == "ready\n", process.communicate()[1]
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    results = [process.communicate(timeout=120) for process in processes]
    for process, (_, err) in zip(processes, results):
        assert process.returncode == 0, err
        assert "Traceback" not in err
    runs = mlflow.MlflowClient(tracking_uri=uri).search_runs(
        [mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name("tests").experiment_id]
    )
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
