"""On the real FashionMNIST: the train command and `mlflow run` leave what a user expects."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest
import torch

from pipeline.core import data
from pipeline.core.metrics import EPOCH_METRICS, TRAIN_TIME
from pipeline.core.recipes import RECIPES, TAG
from tests.conftest import ROOT, cli

pytestmark = pytest.mark.slow


def only_run(experiment="tests"):
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    assert len(runs) == 1
    return runs[0]


def test_train_logs_metrics_artifacts_dataset_and_a_loadable_model(command, data_dir):
    out = command(
        "train", "--epochs", "3", "--optimizer", "adam", "--lr", "1e-3", "--data-dir", str(data_dir)
    )
    assert out.returncode == 0, out.stderr
    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer"] == "adam" and run.data.params["hidden"] == "300,200"
    assert run.data.metrics["test_acc"] >= 0.80
    client = mlflow.MlflowClient()
    for name in EPOCH_METRICS:
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2, 3]
    assert TRAIN_TIME in run.data.metrics
    assert run.data.tags.get("git_commit")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "confusion_matrix.png", "config.json"} <= artifacts
    contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
    assert contexts == {"training", "validation", "test"}
    assert all(i.dataset.digest for i in run.inputs.dataset_inputs)

    # The logged model takes raw pixels and reproduces the logged test accuracy.
    model_uri = f"models:/{run.outputs.model_outputs[0].model_id}"
    model = mlflow.pytorch.load_model(model_uri)
    test = data.load(data_dir).test
    with torch.inference_mode():
        acc = (model(test.images.float()).argmax(1) == test.labels).float().mean().item()
    assert acc == pytest.approx(run.data.metrics["test_acc"], abs=1e-4)
    answer = mlflow.pyfunc.load_model(model_uri).predict(test.images[:4].float().numpy())
    with torch.inference_mode():
        predicted = model(test.images[:4].float()).argmax(1).tolist()
    assert answer["class_index"].tolist() == predicted
    assert np.stack(answer["probabilities"]).shape == (4, 10)
    # Its final metrics are on the model, each with the split it was measured on.
    linked = {
        m.key: m.dataset_name
        for m in mlflow.get_logged_model(run.outputs.model_outputs[0].model_id).metrics
    }
    assert linked["val_acc"] == "fashion-mnist-validation"
    assert linked["test_acc"] == "fashion-mnist-test"
    assert linked["train_loss"] == "fashion-mnist-training"
    assert TRAIN_TIME in linked


def test_train_without_holdout_trains_on_all_60000_and_logs_no_val(command, data_dir):
    """A final model once options are chosen: the validation images join the training split,
    and nothing named val is logged (it would be measured on training images)."""
    out = command(
        "train",
        "--epochs",
        "1",
        "--hidden",
        "32",
        "--holdout",
        "false",
        "--data-dir",
        str(data_dir),
    )
    assert out.returncode == 0, out.stderr
    assert "no val split, test_acc 0." in out.stdout
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.params["holdout"] == "false"
    assert run.info.run_name.endswith("all 60,000 training images")  # told apart in the UI
    assert not [name for name in run.data.metrics if name.startswith("val_")]
    assert {"train_acc", "test_acc", TRAIN_TIME} <= set(run.data.metrics)
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "test"}
    assert json.loads(inputs["training"].profile)["features_shape"][0] == 60_000
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"curves.png", "confusion_matrix.png"} <= artifacts


def test_the_fast_cnn_recipe_trains_and_its_logged_model_flip_averages(command, data_dir):
    """The recipe by name, shortened to 1 epoch of batches of 512 for speed: the run has its
    other values and its name."""
    out = command(
        "train",
        "--recipe",
        "fast_cnn",
        "--epochs",
        "1",
        "--batch-size",
        "512",
        "--data-dir",
        str(data_dir),
    )
    assert out.returncode == 0, out.stderr
    run = only_run()
    expected = dataclasses.replace(RECIPES["fast_cnn"], epochs=1, batch_size=512).to_dict()
    assert run.data.params == {k: str(v) for k, v in expected.items()}
    assert run.data.tags[TAG] == "fast_cnn"
    assert run.data.metrics["test_acc"] >= 0.80
    # The exported graph keeps the eval-mode flip averaging: it reproduces the logged accuracy,
    # and an image and its mirror get the same logits.
    model = mlflow.pytorch.load_model(f"models:/{run.outputs.model_outputs[0].model_id}")
    test = data.load(data_dir).test
    with torch.inference_mode():
        logits = model(test.images.float())
        mirrored = model(test.images[:64].flip(3).float())
    acc = (logits.argmax(1) == test.labels).float().mean().item()
    assert acc == pytest.approx(run.data.metrics["test_acc"], abs=1e-4)
    assert torch.allclose(logits[:64], mirrored, atol=1e-4)


def test_mlflow_run_train_entry_point(tmp_path, tracking_env, data_dir):

    out = subprocess.run(
        [
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "train",
            "--env-manager",
            "local",
            "--experiment-name",
            "tests",
            "-P",
            "recipe=wide_fcn",
            "-P",
            "epochs=1",
            "-P",
            "lr=1e-3",  # the recipe's value, given: logged as typed
            "-P",
            "hidden=64",
            "-P",
            "batch_size=512",  # undeclared: passed on as --batch_size
            "-P",
            f"data_dir={data_dir}",
        ],
        env=tracking_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    run = only_run()
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["hidden"], params["lr"], params["epochs"]) == ("64", "1e-3", "1")
    assert params["batch_size"] == "512" and run.data.tags[TAG] == "wide_fcn"
    recipe = RECIPES["wide_fcn"].to_dict()  # what was not given is the recipe's
    assert all(params[k] == str(recipe[k]) for k in ("optimizer", "dropout", "init", "augment"))
    assert "val_acc" in run.data.metrics and run.data.tags["mlflow.project.entryPoint"] == "train"


SMALL_FCN_SPACE = """
lr: {type: float, low: 5.0e-4, high: 5.0e-3, log: true}
optimizer: {type: categorical, choices: [adam, adamw]}
dropout: {type: float, low: 0.0, high: 0.2}
init: {type: categorical, choices: [default, kaiming_uniform]}
batch_norm: {type: categorical, choices: [false, true]}
hidden: {type: layers, depth: [1, 2], width: {low: 64, high: 256, log: true}}
batch_size: 512
"""


def test_mlflow_run_tune_nests_trials_under_the_project_run_and_resumes(
    tmp_path, tracking_env, data_dir
):
    import optuna

    space = tmp_path / "small.yaml"
    space.write_text(SMALL_FCN_SPACE)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def mlflow_run_tune(workers: int):
        out = subprocess.run(
            [
                "mlflow",
                "run",
                str(ROOT),
                "-e",
                "tune",
                "--env-manager",
                "local",
                "--experiment-name",
                "tests",
                "-P",
                "n_trials=2",
                "-P",
                "epochs=2",
                "-P",
                f"workers={workers}",
                "-P",
                f"space={space}",
                "-P",
                f"storage={storage}",
                "-P",
                "study_name=e2e",
                "-P",
                f"data_dir={data_dir}",
            ],
            env=tracking_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == 0, out.stderr[-3000:]

    mlflow_run_tune(2)  # a helper process too, under `mlflow run`
    mlflow_run_tune(1)  # the same study name resumes: 2 more trials
    study = optuna.load_study(study_name="e2e", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
    parents = [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "tune"]
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
    children = [r for r in runs if "trial_number" in r.data.tags]
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == [0, 1, 2, 3]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {p.info.run_id for p in parents}
    assert all(
        c.data.metrics["val_acc"] > 0.7
        for c in children
        if c.data.tags["trial_state"] == "COMPLETE"
    )
    champion = mlflow.MlflowClient().get_model_version_by_alias("fashion-mnist-fcn", "champion")
    assert champion.tags["trial_number"] == str(study.best_trial.number)
    assert float(champion.tags["test_acc"]) > 0.7


def test_tune_with_two_workers_shares_one_study_one_parent_run_and_one_champion(
    tmp_path, tracking_env, data_dir
):
    import optuna

    space = tmp_path / "small.yaml"
    space.write_text(SMALL_FCN_SPACE)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = cli(
        "tune",
        "--workers",
        "2",
        "--n-trials",
        "5",
        "--epochs",
        "2",
        "--space",
        str(space),
        "--storage",
        storage,
        "--study-name",
        "pair",
        "--pruner",
        "none",
        "--data-dir",
        str(data_dir),
        env=tracking_env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    trials = optuna.load_study(study_name="pair", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5  # 3 + 2, no more
    workers = [t.user_attrs["worker"] for t in trials]
    assert len(set(workers)) == 2 and sorted(map(workers.count, set(workers))) == [2, 3]
    runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
    assert {r.info.status for r in runs} == {"FINISHED"}
    [parent] = [r for r in runs if r.data.tags.get("tune_parent") == "true"]
    assert parent.data.params["workers"] == "2" and parent.data.params["n_trials"] == "5"
    children = [r for r in runs if "trial_number" in r.data.tags]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.tags["worker"] for c in children) == sorted(workers)
    assert parent.data.metrics["trials_complete"] == 5  # the summary came after both ended
    client = mlflow.MlflowClient()
    [version] = client.search_model_versions("name='fashion-mnist-fcn'")
    assert version.tags["trial_number"] == str(
        optuna.load_study(study_name="pair", storage=storage).best_trial.number
    )
    assert out.stdout.count("Look at it:") == 1
    # the main worker says what this machine allows, once; its helper got --epochs 2 from it
    [line] = [ln for ln in out.stdout.splitlines() if ln.startswith("this machine: ~")]
    # no start point in the space: the model's defaults, the study's 300-200 FCN
    assert (
        " s per epoch of the 300-200 FCN (batch 512); trials of 2 epochs (--epochs); the "
        "budget (--timeout 540 s) fits about " in line
    )


def sigterm_when(proc: subprocess.Popen, ready, timeout: float = 300) -> str:
    """SIGTERM to `proc` (started in its own session) 2 s after `ready()`; its stderr."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.5)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.communicate(timeout=120)[1]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(
                f"still running 120 s after SIGTERM: {proc.communicate()[1]}"
            ) from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_tune_stopped_with_two_workers_leaves_nothing_running(tmp_path, tracking_env, data_dir):
    """SIGTERM to the main worker while both train: it stops its helper, every trial that ran
    ends FAIL or COMPLETE, every run KILLED or FINISHED, and no helper process is left."""
    import optuna

    space = tmp_path / "small.yaml"
    space.write_text(SMALL_FCN_SPACE)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # Both stores exist before the command starts: polling a store while the command creates
    # its tables is a creation race in the store library, not what this test is about.
    optuna.storages.RDBStorage(storage)
    mlflow.MlflowClient().search_experiments()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "tune",
            "--workers",
            "2",
            "--n-trials",
            "20",
            "--epochs",
            "20",
            "--space",
            str(space),
            "--storage",
            storage,
            "--study-name",
            "stop",
            "--data-dir",
            str(data_dir),
        ],
        env=tracking_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    def both_train() -> bool:
        try:
            trials = optuna.load_study(study_name="stop", storage=storage).trials
        except KeyError:  # not created yet
            return False
        return (
            len(
                {
                    t.user_attrs.get("worker")
                    for t in trials
                    if t.state.name == "RUNNING" and "worker" in t.user_attrs
                }
            )
            == 2
        )

    stderr = sigterm_when(proc, both_train)
    assert proc.returncode == 130, stderr
    # One line, from the main worker: no Optuna report of the failed trial with its traceback
    # (28 lines), no line from the helper it stopped.
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert errors[0].startswith("error: interrupted (stopped by signal SIGTERM) trial "), stderr
    assert "Traceback" not in stderr and " failed with " not in stderr, stderr
    states = {t.state.name for t in optuna.load_study(study_name="stop", storage=storage).trials}
    assert "RUNNING" not in states and "FAIL" in states
    runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
    assert "RUNNING" not in {r.info.status for r in runs}
    [parent] = [r for r in runs if r.data.tags.get("tune_parent")]
    assert parent.info.status == "KILLED"
    # no helper of this study left (another test's study may have its own running meanwhile)
    helpers = subprocess.run(
        ["pgrep", "-af", f"helper-of {parent.info.run_id}"], capture_output=True, text=True
    )
    assert helpers.stdout == ""


def test_mlflow_run_replicate_quick_writes_every_table_and_claim(tmp_path, tracking_env, data_dir):
    from pipeline.replication.experiments import CLAIMS, TABLES, variant_keys
    from pipeline.replication.replicate_settings import ReplicateSettings

    out = subprocess.run(
        [
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "replicate",
            "--env-manager",
            "local",
            "--experiment-name",
            "tests",
            "-P",
            "quick=true",
            "-P",
            f"out={tmp_path / 'report'}",
            "-P",
            f"data_dir={data_dir}",
        ],
        env=tracking_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = (tmp_path / "report" / "report.md").read_text()
    for table in TABLES:
        assert f"### Table {table.number}: {table.title}" in text
    for claim in CLAIMS:
        assert claim in text
    assert text.count("Verdict: **") == len(CLAIMS)
    assert "QUICK MODE" in text and "## Time to accuracy" in text
    assert (tmp_path / "report" / "report.html").read_text().count("data:image/png") == 6

    runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
    assert {r.info.status for r in runs} == {"FINISHED"}
    top = [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "replicate"]
    assert len(top) == 1
    tables = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == top[0].info.run_id]
    assert sorted(int(r.data.tags["replicate_table"]) for r in tables) == [t.number for t in TABLES]
    seeds = [r for r in runs if "variant" in r.data.tags]
    assert sorted((r.data.tags["variant"], r.data.tags["seed"]) for r in seeds) == sorted(
        (k, s) for k in variant_keys() for s in ("0", "1")
    )
    # Trained in worker processes, each run still hangs under its table's run.
    table_of = {r.info.run_id: r.data.tags["replicate_table"] for r in tables}
    for run in seeds:
        assert table_of[run.data.tags["mlflow.parentRunId"]] == run.data.tags["replicate_table"]
    assert top[0].data.params["train_processes"] == str(ReplicateSettings.build().workers)
    # Every number of the report traces to a run that holds it.
    import json

    results = json.loads((tmp_path / "report" / "results.json").read_text())
    by_id = {r.info.run_id: r for r in seeds}
    assert {r["run_id"] for r in results["runs"]} == set(by_id)
    for entry in results["runs"]:
        assert entry["run_id"] in text
        assert by_id[entry["run_id"]].data.metrics["test_acc"] == pytest.approx(
            entry["final"]["test_acc"]
        )
    client = mlflow.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(top[0].info.run_id, "report")}
    assert {
        "report/report.md",
        "report/report.html",
        "report/results.json",
        "report/figures",
    } <= artifacts


def test_replicate_stopped_mid_training_leaves_every_run_killed(tmp_path, tracking_env, data_dir):
    """SIGTERM (a CI timeout, `kill`) while the workers train: one line, exit 130, the
    trainings, tables and top run all KILLED, no job started after it, no process left."""

    mlflow.MlflowClient().search_experiments()  # the store exists first (see the tune test)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "replicate",
            "--quick",
            "--workers",
            "2",  # two trainings at once, whatever this machine's thread count
            "--out",
            "report",
            "--data-dir",
            str(data_dir),
        ],
        env=tracking_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    def both_train() -> bool:
        runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
        return len([r for r in runs if "variant" in r.data.tags]) == 2

    stderr = sigterm_when(proc, both_train)
    assert proc.returncode == 130, stderr
    assert (
        stderr.strip().splitlines()[-1]
        == "error: interrupted; MLflow runs in progress ended KILLED"
    )
    assert "Traceback" not in stderr, stderr
    runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
    assert {r.info.status for r in runs} == {"KILLED"}
    assert len([r for r in runs if "variant" in r.data.tags]) == 2
    assert not (tmp_path / "report").exists()
    leftover = subprocess.run(["pgrep", "-a", "-s", str(proc.pid)], capture_output=True, text=True)
    alive = [line for line in leftover.stdout.splitlines() if "<defunct>" not in line]
    assert alive == []  # (a zombie is an exited process that this container's init keeps)


def test_replicate_bad_quick_value_is_one_line(tmp_path, tracking_env):
    """Under `mlflow run` a bad -P value is our one line; MLflow has made the project's run
    already and ends it FAILED (exit 1): the line is on it as its end_reason."""
    out = subprocess.run(
        [
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "replicate",
            "--env-manager",
            "local",
            "--experiment-name",
            "tests",
            "-P",
            "quick=maybe",
        ],
        env=tracking_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    line = "error: No such option: --quick-must-be-true-or-false"
    assert line in out.stderr
    run = only_run()
    assert run.info.status == "FAILED" and run.data.tags["end_reason"].startswith(line)
