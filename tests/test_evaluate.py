"""`evaluate` on real data: its accuracy is the one an independent computation gives, it logs
what it promises, and a bad model URI is one line with nothing written."""

import json

import mlflow
import pytest
import torch

from pipeline.core import data
from pipeline.core.config import TrainConfig

pytestmark = pytest.mark.slow


def runs(experiment="tests"):
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


@pytest.fixture
def trained(tracking_env, data_dir):
    """A small FCN trained and logged as `train` does; returns its run id and model."""
    from pipeline.tracking import log as tracklog
    from pipeline.tracking import store

    store.configure()
    config = TrainConfig(hidden=(64,), epochs=1, optimizer="adam", lr=1e-3)
    trained = tracklog.train_run(config, data.load(data_dir), log_model=True, confusion=False)
    return trained.run_id, trained.result.model


def test_evaluate_matches_an_independent_computation(tmp_path, command, data_dir, trained):
    run_id, model = trained
    out = command("evaluate", "--model-uri", f"runs:/{run_id}/model", "--data-dir", str(data_dir))
    assert out.returncode == 0, out.stderr
    test = data.load(data_dir).test
    with torch.inference_mode():
        model.eval()
        expected = (model(test.images.float()).argmax(1) == test.labels).float().mean().item()
    evaluation = [r for r in runs() if r.info.run_id != run_id]
    assert len(evaluation) == 1
    run = evaluation[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_acc"] == pytest.approx(expected, abs=1e-6)
    assert f"test accuracy {100 * expected:.2f}%" in out.stdout
    assert "Shirt" in out.stdout and "macro" in out.stdout
    for name in ("precision", "recall", "f1"):
        assert f"test_{name}_t_shirt_top" in run.data.metrics
        assert f"test_macro_{name}" in run.data.metrics
    client = mlflow.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "confusion_matrix.png",
        "misclassified.png",
        "evaluation.json",
        "per_class.csv",
    } <= artifacts
    figures = json.loads(
        open(client.download_artifacts(run.info.run_id, "evaluation.json", str(tmp_path))).read()
    )
    assert sum(map(sum, figures["confusion_matrix"])) == len(test)
    assert figures["accuracy"] == pytest.approx(expected, abs=1e-6)
    # Linked to the model: the evaluation's metrics are on the logged model's page.
    model_id = run.data.tags["evaluated_model_id"]
    logged = client.get_logged_model(model_id)
    assert any(m.key == "test_acc" and m.run_id == run.info.run_id for m in logged.metrics)


@pytest.mark.parametrize(
    "uri, message",
    [
        ("models:/fashion-mnist-fcn@champion", "run `python -m pipeline tune` first"),
        ("models:/no-such-model/1", "not found"),
        ("runs:/0123456789abcdef0123456789abcdef/model", "not found"),
        ("m-0123456789abcdef0123456789abcdef", "not found"),
        ("just-a-name", "is not runs:/<run id>/model"),
    ],
)
def test_a_bad_model_uri_is_one_line_and_writes_nothing(command, data_dir, uri, message):
    mlflow.set_experiment("tests")  # a store exists, with no model in it
    out = command("evaluate", "--model-uri", uri, "--data-dir", str(data_dir))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert runs() == []


def test_no_tracking_store_is_one_line_and_creates_none(tmp_path, command, data_dir):
    out = command("evaluate", "--data-dir", str(data_dir))
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "there is no tracking store" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_a_model_that_is_not_ours_is_refused(command, data_dir):
    import numpy as np

    mlflow.set_experiment("tests")
    with mlflow.start_run():
        example = np.zeros((2, 3), dtype=np.float32)
        info = mlflow.pytorch.log_model(torch.nn.Linear(3, 2), name="model", input_example=example)
    out = command("evaluate", "--model-uri", info.model_uri, "--data-dir", str(data_dir))
    assert out.returncode == 2
    assert "is not a FashionMNIST classifier of this project" in out.stderr
    assert len(runs()) == 1  # only the run that logged the foreign model


def test_the_python_function_flavor_answers_class_index_name_and_probabilities(trained, data_dir):
    """What `mlflow models serve` runs: the same network, answering like a classifier."""
    import numpy as np

    run_id, _ = trained
    images = data.load(data_dir).test.images[:50].float()
    served = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    answer = served.predict(images.numpy())
    assert list(answer.columns) == ["class_index", "class_name", "probabilities"]
    schema = served.metadata.get_output_schema().input_names()
    assert schema == ["class_index", "class_name", "probabilities"]
    with torch.inference_mode():
        logits = mlflow.pytorch.load_model(f"runs:/{run_id}/model")(images)
    probs = np.stack(answer["probabilities"])
    np.testing.assert_allclose(probs, logits.softmax(1).numpy(), rtol=1e-5, atol=1e-6)
    assert answer["class_index"].tolist() == logits.argmax(1).tolist()
    assert answer["class_name"].tolist() == [data.CLASSES[i] for i in answer["class_index"]]


def test_evaluate_and_predict_still_read_a_model_logged_as_bare_logits(tmp_path, command, data_dir):
    """Models logged before the classifier answer (pytorch flavor, 10 logits out) still work."""
    from mlflow.models import infer_signature
    from PIL import Image

    from pipeline.core.models import build_model

    mlflow.set_experiment("tests")
    test = data.load(data_dir).test
    model = build_model(TrainConfig(hidden=(16,))).eval()
    example = test.images[:5].float().numpy()
    with torch.inference_mode():
        signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            model, name="model", signature=signature, input_example=example
        )
    with torch.inference_mode():
        expected = (model(test.images.float()).argmax(1) == test.labels).float().mean().item()
    out = command("evaluate", "--model-uri", info.model_uri, "--data-dir", str(data_dir))
    assert out.returncode == 0, out.stderr
    assert f"test accuracy {100 * expected:.2f}%" in out.stdout
    Image.fromarray(test.images[0, 0].numpy()).save(tmp_path / "first.png")
    out = command("predict", str(tmp_path / "first.png"), "--model-uri", info.model_uri)
    assert out.returncode == 0, out.stderr
    with torch.inference_mode():
        top = data.CLASSES[model(test.images[:1].float()).argmax().item()]
    assert out.stdout.split(": ", 1)[1].startswith(top)
