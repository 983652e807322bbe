"""The command line as a user meets it: errors are one line, and nothing is left behind."""

from pathlib import Path

import mlflow
import pytest

from pipeline.core import data
from tests.conftest import ROOT, cli


def test_help_lists_the_commands():
    out = cli("--help")
    assert out.returncode == 0
    for command in ("prepare", "train", "tune", "dashboard", "predict"):
        assert command in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet"], "'--model'"),
    (["--optimizer", "lbfgs"], "'--optimizer'"),
    (["--init", "zeros"], "'--init'"),
    (["--lr", "0"], "lr: 0.0 must be a number > 0"),
    (["--lr", "-1e-3"], "lr: -0.001 must be a number > 0"),
    (["--lr", "fast"], "'--lr'"),
    (["--dropout", "1"], "dropout: 1.0 must be in [0, 1)"),
    (["--epochs", "0"], "epochs: 0 must be an integer >= 1"),
    (["--epochs", "2.5"], "'--epochs'"),
    (["--batch-size", "0"], "batch_size: 0 must be an integer >= 1"),
    (["--hidden", "300,x"], "hidden: '300,x' is not a list of positive layer sizes"),
    (["--batch-norm", "maybe"], "batch_norm: 'maybe' must be true or false"),
    (["--weight-decay", "-1"], "weight_decay: -1.0 must be >= 0"),
    (["--label-smoothing", "1"], "label_smoothing: 1.0 must be in [0, 1)"),
    (["--augment", "sometimes"], "augment: 'sometimes' must be true or false"),
    (["--max-shift", "9"], "max_shift: 9 must be an integer from 0 to 8"),
    (["--schedule", "step"], "'--schedule'"),
    (["--bogus", "1"], "--bogus"),
])
def test_bad_train_input_is_one_line_and_writes_nothing(args, message, tmp_path, tracking_env):
    out = cli("train", *args, env=tracking_env, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and message in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no store, no run, nothing half-written


def test_a_data_dir_with_wrong_files_is_one_line(tmp_path, tracking_env):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in data.SHA256:
        (bad / f"{name}.gz").write_bytes(b"not gzip at all")
    out = cli("train", "--data-dir", str(bad), "--epochs", "1", env=tracking_env, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {bad}/") and "truncated or corrupt" in out.stderr
    assert out.stderr.count("\n") == 1
    assert not (tmp_path / "mlflow.db").exists()
    assert not (bad / data.CACHE_NAME).exists()


def test_a_diverging_train_run_ends_failed_with_one_line(tmp_path, tracking_env, data_dir):
    out = cli("train", "--lr", "1e9", "--epochs", "3", "--data-dir", str(data_dir),
              env=tracking_env, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: training diverged at epoch")
    runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
    assert [r.info.status for r in runs] == ["FAILED"]


HEAVY = ("torch", "mlflow", "optuna", "matplotlib")


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["tune", "--help"],
                                  ["replicate", "--help"], ["train", "--lr", "-1"],
                                  ["tune", "--epochs", "-1"], ["train", "--model", "vgg"]])
def test_help_and_argument_errors_import_no_heavy_library(args):
    # What keeps `--help` and argument errors instant; the time itself is in the benchmark.
    import subprocess
    import sys

    code = ("import sys\nfrom pipeline.cli.app import main\nsys.argv = ['pipeline', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.stderr.strip().splitlines()[-1] == "[]", out.stderr


def test_mlproject_names_every_train_parameter():
    import yaml

    from pipeline.core.config import TrainConfig

    spec = yaml.safe_load(Path(ROOT, "MLproject").read_text())
    params = spec["entry_points"]["train"]["parameters"]
    assert set(params) == set(TrainConfig.fields()) | {"data_dir"}
    assert all(f"{{{name}}}" in spec["entry_points"]["train"]["command"] for name in params)


@pytest.mark.parametrize("entry_point, command", [("tune", "tune"), ("replicate", "replicate")])
def test_mlproject_passes_every_parameter_to_the_cli(entry_point, command):
    import typer.main
    import yaml

    from pipeline.cli.app import app

    spec = yaml.safe_load(Path(ROOT, "MLproject").read_text())["entry_points"][entry_point]
    flags = {flag for param in typer.main.get_command(app).commands[command].params
             for flag in param.opts}
    for name in spec["parameters"]:
        flag = f"--{name.replace('_', '-')}"
        assert flag in flags and f"{{{name}}}" in spec["command"], name


def test_a_malformed_space_stops_tune_before_any_trial(tmp_path, tracking_env, data_dir):
    space = tmp_path / "bad.yaml"
    space.write_text("lr: {type: float, low: 0.1, high: 0.01}\n")
    out = cli("tune", "--space", str(space), "--data-dir", str(data_dir), env=tracking_env,
              cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == "error: bad.yaml: lr: low (0.1) is greater than high (0.01)\n"
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()
