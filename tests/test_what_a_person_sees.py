"""What a person sees, with real servers on 127.0.0.1: the MLflow UI and optuna-dashboard in
headless Chromium, the champion served by `mlflow models serve`, and `predict` on image files.

One tiny real study (3 trials of 2 epochs, a small FCN) feeds every test of this module; a
tinier one run with `--ray local` must look the same in the MLflow UI and optuna-dashboard.
Screenshots go to test-artifacts/ (ignored by git); docs/ holds the curated pair the README shows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.core import data
from tests.conftest import ROOT, cli

# One xdist worker runs this module (`make test` runs two): its studies are module fixtures.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"  # Debian's; never a downloaded browser
# Root in a closed network: no sandbox, no GPU, nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STUDY = "browser"
MODEL_URI = "models:/fashion-mnist-fcn@champion"
SPACE = """
lr: {type: float, low: 1.0e-3, high: 3.0e-3, log: true}
optimizer: adam
hidden: {type: layers, depth: [1, 1], width: {low: 64, high: 128, log: true}}
batch_size: 256
"""


@dataclass(frozen=True)
class Study:
    folder: Path
    env: dict[str, str]
    storage: str
    experiment_id: str
    parent: mlflow.entities.Run
    trials: list[mlflow.entities.Run]  # by trial number
    link: str  # the runs page `tune` prints ("#/experiments/...")
    name: str  # the study's


def tune(folder: Path, data_dir: Path, name: str, *options: str) -> Study:
    """`tune` for real on `folder`'s private stores, the champion registered."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    # None of the MLFLOW_* settings that earlier tests or `mlflow run` may have left behind
    # (MLFLOW_RUN_ID, MLFLOW_EXPERIMENT_ID, ...): these stores and names only.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MLFLOW_TRACKING_URI=uri,
        MLFLOW_EXPERIMENT_NAME="fashion-mnist",
        # a trial of this tiny study lasts seconds: MLflow's sampler every 0.5 s
        MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="0.5",
        PYTHONPATH=str(ROOT),  # this checkout, whatever the venv's editable install says
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    (folder / "space.yaml").write_text(SPACE)
    storage = f"sqlite:///{folder / 'optuna.db'}"
    # --pruner none: every trial completes, so each has a logged model and system metrics to
    # show (the default, halving, would stop those behind the first at epoch 1)
    out = cli(
        "tune",
        "--space",
        "space.yaml",
        "--timeout",
        "0",
        "--pruner",
        "none",
        "--storage",
        storage,
        "--study-name",
        name,
        "--data-dir",
        str(data_dir),
        *options,
        env=env,
        cwd=folder,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["fashion-mnist"], output_format="list")
    parent = next(r for r in runs if r.data.tags.get("tune_parent") == "true")
    trials = sorted(
        (r for r in runs if "trial_number" in r.data.tags),
        key=lambda r: int(r.data.tags["trial_number"]),
    )
    link = re.search(r"http://127\.0\.0\.1:5000/(#/experiments/\S+)", out.stdout).group(1)
    return Study(folder, env, storage, parent.info.experiment_id, parent, trials, link, name)


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_dir) -> Study:
    """3 trials of 2 epochs in this process's helpers."""
    found = tune(
        tmp_path_factory.mktemp("study"), data_dir, STUDY, "--n-trials", "3", "--epochs", "2"
    )
    assert len(found.trials) == 3
    return found


@pytest.fixture(scope="module")
def ray_study(tmp_path_factory, data_dir) -> Study:
    """The same, smaller, as two tasks of a Ray cluster started here: 3 trials of 1 epoch."""
    pytest.importorskip("ray", reason="pip install -r requirements-ray.txt (.ci/run does)")
    found = tune(
        tmp_path_factory.mktemp("ray-study"),
        data_dir,
        f"{STUDY}-ray",
        *("--ray", "local", "--workers", "2", "--n-trials", "3", "--epochs", "1"),
    )
    assert len(found.trials) == 3
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(command: list[str], ready_path: str, port: int, study: Study, name: str, **env: str):
    """Start a server in its own process group; yield its URL once `ready_path` answers 200."""
    url = f"http://127.0.0.1:{port}"
    log = study.folder / f"{name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command,
            env={**study.env, **env},
            cwd=study.folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for _ in range(600):  # up to ~3 minutes on a busy machine
            try:
                with urllib.request.urlopen(url + ready_path, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            try:  # waits on the process: returns at once if the server died
                proc.wait(timeout=0.3)
                pytest.fail(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            except subprocess.TimeoutExpired:
                pass
        else:
            pytest.fail(f"{name} never answered {url}{ready_path}:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def mlflow_ui_of(study: Study):
    port = free_port()
    with server(
        [
            "mlflow",
            "server",
            "--backend-store-uri",
            study.env["MLFLOW_TRACKING_URI"],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        "/health",
        port,
        study,
        "mlflow-server",
        # no background job workers (a dozen processes) for a UI that only reads
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    ) as url:
        yield url


@contextmanager
def dashboard_of(study: Study):
    port = free_port()
    with server(
        [
            sys.executable,
            "-m",
            "pipeline",
            "dashboard",
            "--storage",
            study.storage,
            "--port",
            str(port),
        ],
        "/api/studies",
        port,
        study,
        "optuna-dashboard",
    ) as url:
        yield url


def served(study_fixture: str, serve):
    """A module fixture: `serve` (mlflow_ui_of, dashboard_of) on that study's stores."""

    @pytest.fixture(scope="module")
    def fixture(request):
        with serve(request.getfixturevalue(study_fixture)) as url:
            yield url

    return fixture


mlflow_ui = served("study", mlflow_ui_of)
dashboard = served("study", dashboard_of)
ray_mlflow_ui = served("ray_study", mlflow_ui_of)
ray_dashboard = served("ray_study", dashboard_of)


# What a person sees of a study is the same whichever ran its trials: `--workers` helper
# processes or `--ray local` tasks (the Ray study skips where Ray is not installed).
def seen_with(server_fixture: str):
    return pytest.mark.parametrize(
        "fixtures",
        [
            pytest.param(("study", server_fixture), id="workers"),
            # beside tests/test_ray.py on one xdist worker: one Ray cluster at a time
            pytest.param(
                ("ray_study", f"ray_{server_fixture}"),
                id="ray",
                marks=pytest.mark.xdist_group("ray"),
            ),
        ],
    )


@pytest.fixture(scope="module")
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium (CI installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 860})
        page.set_default_timeout(90_000)  # a React app on a busy 2-core machine
        yield page
        browser.close()


@pytest.fixture(autouse=True)
def screenshot_of_a_failure(request):
    """A failed browser test leaves what the browser showed: test-artifacts/FAILED-<test>.png."""
    yield
    report = getattr(request.node, "reports", {}).get("call")
    if report is not None and report.failed and "page" in request.fixturenames:
        name = re.sub(r"[^\w.-]+", "-", request.node.name)
        screenshot(request.getfixturevalue("page"), f"FAILED-{name}.png", full_page=True)


def screenshot(page, name: str, **kwargs) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), **kwargs)
    return path


def shown(value: float) -> str:
    """How the MLflow UI writes a metric: accuracies are exact 4-digit decimals (8623 / 10000)."""
    return repr(value)


def row(page, run_name: str):
    """Every part of a run's table row: ag-grid splits a row into pinned and scrolling halves."""
    index = page.locator("[role=row]", has_text=run_name).first.get_attribute("row-index")
    return page.locator(f"[role=row][row-index='{index}']")


@seen_with("mlflow_ui")
def test_mlflow_ui_lists_the_tune_run_its_trials_and_their_val_acc(fixtures, request, page):
    study, mlflow_ui = map(request.getfixturevalue, fixtures)
    # The link tune prints opens on the runs, not on MLflow 3's GenAI overview; the experiment
    # is tagged as model training (the UI's kind selector shows it).
    assert f"experiments/{study.experiment_id}/runs" in study.link
    page.goto(f"{mlflow_ui}/{study.link}")
    page.get_by_text(f"tune {study.name}").wait_for()
    assert "/runs" in page.url, page.url
    client = mlflow.MlflowClient(study.env["MLFLOW_TRACKING_URI"])
    assert (
        client.get_experiment(study.experiment_id).tags["mlflow.experimentKind"]
        == "custom_model_development"
    )
    close = page.get_by_role("button", name="Close")  # the MLflow Assistant's side panel
    if close.count():
        close.first.click()
    assert {t.data.tags["mlflow.parentRunId"] for t in study.trials} == {study.parent.info.run_id}
    parent = page.locator("[role=row]", has_text=f"tune {study.name}")
    parent.locator("button[data-component-id*=runnamecellrenderer]").click()  # expand
    for trial in study.trials:
        page.get_by_text(trial.info.run_name, exact=True).wait_for()
    page.get_by_role("button", name="Columns", exact=True).click()
    page.get_by_placeholder("Search columns").fill("val_acc")
    page.get_by_role("dialog").locator("span[title]").filter(
        has_text=re.compile(r"^val_acc$")
    ).click()
    page.keyboard.press("Escape")
    page.get_by_role("columnheader", name="val_acc").first.wait_for()
    for trial in study.trials:
        value = shown(trial.data.metrics["val_acc"])
        row(page, trial.info.run_name).filter(has_text=value).first.wait_for()
        assert len(value) <= 6, value  # 0.8623, not float32's 0.8622999787330627
    champion = client.get_model_version_by_alias("fashion-mnist-fcn", "champion")
    best = study.trials[int(champion.tags["trial_number"])]  # its own model is registered
    row(page, best.info.run_name).filter(has_text="fashion-mnist-fcn").first.wait_for()
    screenshot(page, f"mlflow-runs{'-ray' * (study.name != STUDY)}.png")
    page.goto(f"{mlflow_ui}/#/models/fashion-mnist-fcn")  # the version with its alias
    page.get_by_role("row").filter(has_text=f"Version {champion.version}").filter(
        has_text=re.compile(r"@\s*champion")
    ).wait_for()


def test_mlflow_ui_shows_a_trials_metrics_and_curves(study, mlflow_ui, page):
    trial = study.trials[-1]
    page.goto(f"{mlflow_ui}/#/experiments/{study.experiment_id}/runs/{trial.info.run_id}")
    page.get_by_text(trial.info.run_name, exact=True).first.wait_for()
    for name in ("val_acc", "test_acc", "train_loss"):
        page.get_by_role("cell", name=name, exact=True).first.wait_for()
        page.get_by_text(shown(trial.data.metrics[name]), exact=True).first.wait_for()
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("curves.png", exact=True).click()
    page.wait_for_function(
        "() => Array.from(document.images).some(i => "
        "i.alt === 'curves.png' && i.complete && i.naturalWidth > 500)"
    )
    screenshot(page, "mlflow-trial-curves.png")


def test_mlflow_ui_shows_a_trials_system_metrics(study, mlflow_ui, page):
    trial = study.trials[-1]
    page.goto(
        f"{mlflow_ui}/#/experiments/{study.experiment_id}/runs/{trial.info.run_id}"
        "?workflowType=machine_learning"
    )
    page.get_by_role("tab", name="System metrics").click()
    page.get_by_text("cpu_utilization_percentage").first.wait_for()
    page.get_by_text("disk_usage_megabytes", exact=True).first.wait_for()
    screenshot(page, "mlflow-trial-system-metrics.png")


def test_mlflow_ui_models_view_lists_every_trial_model_with_its_val_acc(study, mlflow_ui, page):
    page.set_viewport_size({"width": 2600, "height": 860})  # the grid draws visible columns only
    try:
        page.goto(
            f"{mlflow_ui}/#/experiments/{study.experiment_id}/models?workflowType=machine_learning"
        )
        page.get_by_text("fashion-mnist-validation", exact=False).first.wait_for()
        page.get_by_role("columnheader", name="val_acc").first.wait_for()
        for trial in study.trials:  # each model: the run it came from and its val_acc
            row(page, trial.info.run_name).filter(
                has_text=shown(trial.data.metrics["val_acc"])
            ).first.wait_for()
        screenshot(page, "mlflow-models.png")
    finally:
        page.set_viewport_size({"width": 1440, "height": 860})


@seen_with("dashboard")
def test_optuna_dashboard_shows_the_study_its_trials_and_best_value(fixtures, request, page):
    import optuna

    study, dashboard = map(request.getfixturevalue, fixtures)
    optuna_study = optuna.load_study(study_name=study.name, storage=study.storage)
    page.goto(f"{dashboard}/dashboard")
    page.get_by_text(study.name).first.wait_for()
    page.get_by_text(study.name).first.click()
    best = optuna_study.best_trial
    page.get_by_text(f"Best Trial (number={best.number})").wait_for()
    page.get_by_text(repr(best.value), exact=True).first.wait_for()
    assert page.get_by_text("val_acc").count() > 0  # the objective's name, not "Objective 0"
    screenshot(page, f"optuna-dashboard{'-ray' * (study.name != STUDY)}.png", full_page=True)
    page.goto(f"{dashboard}/dashboard/studies/{optuna_study._study_id}/trials")
    assert len(optuna_study.trials) == len(study.trials)  # one MLflow run per trial
    for trial in optuna_study.trials:  # each in the list with its state's chip
        page.get_by_role("button").filter(
            has_text=re.compile(rf"^Trial {trial.number}\s*Complete")
        ).first.wait_for()


@pytest.fixture(scope="module")
def champion(study):
    """The registered champion, loaded in this process."""
    mlflow.set_tracking_uri(study.env["MLFLOW_TRACKING_URI"])
    return mlflow.pytorch.load_model(MODEL_URI, map_location="cpu")


@pytest.fixture(scope="module")
def confident(champion, data_dir):
    """Up to one test image per class that the champion gets right with > 0.9 probability."""
    test = data.load(data_dir).test
    with torch.inference_mode():
        probs = champion(test.images[:2000].float()).softmax(1)
    picked = {}
    for i, (p, label) in enumerate(zip(probs, test.labels[:2000].tolist())):
        if p.argmax().item() == label and p.max().item() > 0.9 and label not in picked:
            picked[label] = i
    assert len(picked) >= 6, picked
    index = torch.tensor(sorted(picked.values()))
    return test.images[index], test.labels[index]


@pytest.fixture(scope="module")
def model_server(study):
    port = free_port()
    with server(
        [
            "mlflow",
            "models",
            "serve",
            "-m",
            MODEL_URI,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        "/ping",
        port,
        study,
        "models-serve",
    ) as url:
        yield url


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_served_champion_answers_class_and_probabilities_as_accurately_as_its_run(
    model_server, champion, study, data_dir
):
    """Every test image through `mlflow models serve`: the answers' accuracy is the champion
    run's test_acc, and each answer is its class index, name and ten probabilities."""
    test = data.load(data_dir).test
    correct = 0
    for start in range(0, len(test), 2500):
        images = test.images[start : start + 2500]
        status, answer = post(model_server, json.dumps({"inputs": images.tolist()}).encode())
        assert status == 200, answer
        rows = answer["predictions"]
        assert len(rows) == len(images) and set(rows[0]) == {
            "class_index",
            "class_name",
            "probabilities",
        }
        index = np.array([row["class_index"] for row in rows])
        assert [row["class_name"] for row in rows] == [data.CLASSES[i] for i in index]
        probs = np.array([row["probabilities"] for row in rows])
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
        assert (probs.argmax(1) == index).all()
        if start == 0:
            with torch.inference_mode():
                expected = champion(images[:100].float()).softmax(1).numpy()
            np.testing.assert_allclose(probs[:100], expected, rtol=1e-4, atol=1e-6)
        correct += int((index == test.labels[start : start + 2500].numpy()).sum())
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("fashion-mnist-fcn", "champion")
    run_id = client.get_logged_model(version.source.removeprefix("models:/")).source_run_id
    assert correct / len(test) == pytest.approx(
        client.get_run(run_id).data.metrics["test_acc"], abs=1e-9
    )


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        (
            json.dumps({"inputs": [[0.0] * 784]}).encode(),
            "application/json",
            "does not match expected shape (-1, 1, 28, 28)",
        ),
        (
            json.dumps({"inputs": [[[["dark"] * 28] * 28]]}).encode(),
            "application/json",
            "could not convert string to float",
        ),
        (b"pixels please", "application/json", "valid JSON"),
        (json.dumps({"pixels": []}).encode(), "application/json", "'inputs'"),
    ],
)
def test_served_champion_answers_a_malformed_request_with_400(
    model_server, body, content_type, message
):
    status, answer = post(model_server, body, content_type)
    assert status == 400, answer
    assert message in answer["message"]


def save_as_files(images: torch.Tensor, labels: torch.Tensor, folder: Path) -> dict[str, str]:
    """Each image as a 28x28 PNG; the first also large, RGB and dark-on-light (a 'photo')."""
    folder.mkdir()
    expected = {}
    for i, (image, label) in enumerate(zip(images[:, 0].numpy(), labels.tolist())):
        name = f"test_{i}.png"
        Image.fromarray(image).save(folder / name)
        expected[name] = data.CLASSES[label]
    photo = Image.fromarray(255 - images[0, 0].numpy()).resize((336, 336), Image.Resampling.BICUBIC)
    photo.convert("RGB").save(folder / "photo.png")
    expected["photo.png"] = data.CLASSES[labels[0].item()]
    return expected


def top_classes(stdout: str) -> dict[str, str]:
    """'folder/x.png: Sneaker 97.1%, Sandal 2.4%' -> {'x.png': 'Sneaker'}."""
    lines = [line.rsplit(": ", 1) for line in stdout.strip().splitlines()]
    return {
        Path(path).name: re.match(r"(.+) [\d.]+%", top.split(", ")[0]).group(1)
        for path, top in lines
    }


def test_predict_names_the_class_of_real_images_in_any_format(study, confident):
    images, labels = confident
    expected = save_as_files(images, labels, study.folder / "images")
    out = cli("predict", *sorted(expected), env=study.env, cwd=study.folder / "images")
    assert out.returncode == 0, out.stderr[-2000:]
    assert top_classes(out.stdout) == expected


def test_mlflow_run_predict_entry_point(study, confident):
    images, labels = confident
    folder = study.folder / "entry-point-images"
    expected = save_as_files(images[:2], labels[:2], folder)
    out = subprocess.run(
        [
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "predict",
            "--env-manager",
            "local",
            "-P",
            f"images={folder}",
        ],
        env=study.env,
        cwd=study.folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert top_classes(out.stdout) == expected
