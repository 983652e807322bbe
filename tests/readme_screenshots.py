"""The README's screenshots, taken from the stores a real `make` left (not from the tests' tiny
study): `python -m tests.readme_screenshots [FOLDER]`, FOLDER holding mlflow.db, mlruns/ and
optuna.db (default: the project directory). Writes docs/mlflow-runs.png, docs/mlflow-models.png
and docs/optuna-dashboard.png; needs Debian's chromium, as the browser tests do.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import mlflow
from playwright.sync_api import sync_playwright

from tests.test_what_a_person_sees import CHROMIUM, CHROMIUM_ARGS, Study, free_port, server

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def main(folder: Path) -> None:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MLFLOW_TRACKING_URI=uri,
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name("fashion-mnist").experiment_id
    study = Study(folder, env, f"sqlite:///{folder / 'optuna.db'}", experiment, None, [], "")
    ui_port, dash_port = free_port(), free_port()
    with (
        server(
            [
                "mlflow",
                "server",
                "--backend-store-uri",
                uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(ui_port),
                "--workers",
                "1",
            ],
            "/health",
            ui_port,
            study,
            "mlflow-server",
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        ) as ui,
        server(
            [
                sys.executable,
                "-m",
                "pipeline",
                "dashboard",
                "--storage",
                study.storage,
                "--port",
                str(dash_port),
            ],
            "/api/studies",
            dash_port,
            study,
            "optuna-dashboard",
        ) as dashboard,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(90_000)
        runs(page, ui, experiment)
        models(page, ui, experiment)
        page.goto(f"{dashboard}/dashboard")
        page.get_by_text("fcn").first.wait_for()
        page.get_by_text("fcn").first.click()
        page.get_by_text(re.compile(r"Best Trial \(number=\d+\)")).wait_for()
        page.wait_for_timeout(3000)  # the plots draw after the numbers
        page.screenshot(path=str(DOCS / "optuna-dashboard.png"), full_page=True)
        browser.close()
    print(f"wrote {DOCS}/mlflow-runs.png, mlflow-models.png, optuna-dashboard.png")


def close_assistant(page) -> None:
    close = page.get_by_role("button", name="Close")  # the MLflow Assistant's side panel
    if close.count():
        close.first.click()


def runs(page, ui: str, experiment: str) -> None:
    """The tune run expanded, its trials with their val_acc, as the README describes."""
    page.goto(f"{ui}/#/experiments/{experiment}/runs?workflowType=machine_learning")
    page.get_by_text("tune fcn").first.wait_for()
    page.get_by_text("Model training", exact=True).click()  # the browser remembers the switch
    page.get_by_text("tune fcn").first.wait_for()
    close_assistant(page)
    parent = page.locator("[role=row]", has_text="tune fcn").first
    parent.locator("button[data-component-id*=runnamecellrenderer]").click()
    page.get_by_text("trial 0", exact=True).wait_for()
    page.get_by_role("button", name="Columns", exact=True).click()
    page.get_by_placeholder("Search columns").fill("val_acc")
    page.get_by_role("dialog").locator("span[title]").filter(
        has_text=re.compile("^val_acc$")
    ).first.click()
    page.keyboard.press("Escape")
    page.get_by_role("columnheader", name="val_acc").first.wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(DOCS / "mlflow-runs.png"))


def models(page, ui: str, experiment: str) -> None:
    """The Models tab: the trials' logged models with the columns that matter here (the others
    hidden through its Columns menu)."""
    page.set_viewport_size({"width": 2000, "height": 560})
    page.goto(f"{ui}/#/experiments/{experiment}/models?workflowType=machine_learning")
    # any trial's model: `--keep-models` may have deleted trial 0's
    page.locator("text=/^trial \\d+$/ >> visible=true").first.wait_for()
    close_assistant(page)
    page.get_by_role("button", name="Columns", exact=True).click()
    menu = page.get_by_role("menu")
    for name in ("Logged from", "Dataset", "Parameters"):
        menu.get_by_text(name, exact=True).first.click()
    menu.get_by_text(re.compile(r"^Dataset: fashion-mnist-training")).first.click()
    page.keyboard.press("Escape")
    page.get_by_role("columnheader", name="val_acc").first.wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(DOCS / "mlflow-models.png"))
    page.set_viewport_size({"width": 1440, "height": 900})


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
