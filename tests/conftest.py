"""Shared fixtures: tiny synthetic data for unit tests, the real FashionMNIST for end-to-end
ones, private tracking stores, in-process commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pipeline.cli import app as cli_app
from pipeline.core import data, interrupt
from pipeline.core.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Ctrl-C and Ctrl-\\ reach this suite and the commands it starts, even from a shell's
    background job (`make test &`, a CI step), which POSIX starts with SIGINT and SIGQUIT
    ignored: children inherit that, and our commands rightly keep an ignored signal ignored
    (pipeline/core/interrupt.py), so the signal tests would test the shell instead."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on its test (`item.reports[when]`), for fixtures that look at how
    the test went (the browser tests' screenshot of a failure)."""
    report = yield
    item.__dict__.setdefault("reports", {})[report.when] = report
    return report


def synthetic_split(n: int, seed: int) -> data.Split:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    return data.Split(images, torch.randint(0, 10, (n,), generator=g))


@pytest.fixture
def tiny_data() -> data.FashionMNIST:
    """64 training, 32 validation and 32 test images of noise with random labels."""
    return data.FashionMNIST(
        synthetic_split(64, 1), synthetic_split(32, 2), synthetic_split(32, 3), digest="synthetic"
    )


@pytest.fixture
def tiny_config() -> TrainConfig:
    return TrainConfig(hidden=(32,), epochs=2, batch_size=16, optimizer="adam", lr=1e-3)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A fresh data dir prepared from the machine's FashionMNIST (Debian's files or a download)."""
    folder = tmp_path_factory.mktemp("data")
    data.prepare(folder)
    return folder


@pytest.fixture
def tracking_env(tmp_path, monkeypatch) -> dict[str, str]:
    """A private SQLite tracking store; returns the environment for subprocesses."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    # mlflow.set_experiment in an earlier test exports MLFLOW_EXPERIMENT_ID to this process;
    # `mlflow run --experiment-name` refuses to start when both are set.
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    import mlflow

    mlflow.set_tracking_uri(uri)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # This checkout's package, wherever the subprocess runs (an editable install may point at
    # another one).
    env["PYTHONPATH"] = str(ROOT)
    return env


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 900
) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS` in a subprocess, as a user runs it (this checkout's code, even
    from another folder and when the environment has another checkout installed)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        env=with_this_checkout(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def with_this_checkout(env: dict[str, str] | None) -> dict[str, str]:
    return {**(env if env is not None else os.environ), "PYTHONPATH": str(ROOT)}


def project_run(client, experiment_id: str, name: str, entry_point: str = "train", **tags) -> str:
    """A RUNNING run as `mlflow run -e ENTRY_POINT` creates it."""
    tags = {"mlflow.source.type": "PROJECT", "mlflow.project.entryPoint": entry_point, **tags}
    return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id


@pytest.fixture
def command(tmp_path, tracking_env, monkeypatch, capfd):
    """`python -m pipeline ARGS` from tmp_path, in this process: its exit code, stdout, stderr."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, env: dict[str, str] | None = None) -> SimpleNamespace:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "argv", ["pipeline", *args])
        interrupt.reset()  # main() installs the signal handlers again for each command
        capfd.readouterr()
        with pytest.raises(SystemExit) as exit:
            cli_app.main()
        out = capfd.readouterr()
        return SimpleNamespace(returncode=exit.value.code, stdout=out.out, stderr=out.err)

    return run


SMALL_SPACE = """
lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
optimizer: {type: categorical, choices: [adam, sgd]}
dropout: {type: float, low: 0.0, high: 0.3}
hidden: {type: layers, depth: [1, 2], width: {low: 8, high: 32, log: true}}
batch_size: 32
"""


@pytest.fixture
def settings(tmp_path, tracking_env):
    """make(...) -> the TuneSettings of a tiny FCN study with private stores, resolved from
    TuneOptions (so every other value is tune's default); keyword arguments are options."""
    import mlflow

    from pipeline.tuning.tune_settings import TuneOptions

    def make(space_text=SMALL_SPACE, **overrides):
        path = tmp_path / "space.yaml"
        path.write_text(space_text)
        mlflow.set_experiment("tests")
        typed = dict(
            space=str(path),
            storage=f"sqlite:///{tmp_path / 'optuna.db'}",
            study_name="s",
            n_trials=3,
            timeout=0,
            epochs=2,
            pruner="median",
        )
        return TuneOptions(**{**typed, **overrides}).resolve()

    return make
