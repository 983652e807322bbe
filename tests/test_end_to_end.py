"""On the real FashionMNIST: the train command and `mlflow run` leave what a user expects."""

import mlflow
import numpy as np
import pytest
import torch

from pipeline import data
from pipeline.training import EPOCH_METRICS, TRAIN_TIME
from tests.conftest import ROOT, cli

pytestmark = pytest.mark.slow


def only_run(experiment="tests"):
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    assert len(runs) == 1
    return runs[0]


def test_train_logs_metrics_artifacts_dataset_and_a_loadable_model(tmp_path, tracking_env,
                                                                   data_dir):
    out = cli("train", "--epochs", "3", "--optimizer", "adam", "--lr", "1e-3",
              "--data-dir", str(data_dir), env=tracking_env, cwd=tmp_path)
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
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    logits = pyfunc.predict(test.images[:4].float().numpy())
    assert np.asarray(logits).shape == (4, 10)


def test_mlflow_run_train_entry_point(tmp_path, tracking_env, data_dir):
    import subprocess

    out = subprocess.run(
        ["mlflow", "run", str(ROOT), "-e", "train", "--env-manager", "local",
         "--experiment-name", "tests", "-P", "epochs=1", "-P", "lr=1e-3", "-P", "optimizer=adam",
         "-P", "hidden=64", "-P", f"data_dir={data_dir}"],
        env=tracking_env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.params["hidden"] == "64" and run.data.params["lr"] == "1e-3"
    assert "val_acc" in run.data.metrics and run.data.tags["mlflow.project.entryPoint"] == "train"
