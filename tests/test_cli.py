"""The command line as a user meets it: errors are one line, and nothing is left behind.

Commands run in this process (the `command` fixture of tests/test_bad_input.py, which holds the
list of bad inputs); only the test of what `--help` imports needs a fresh process.
"""

import mlflow
import pytest

from pipeline.core import data
from tests.conftest import ROOT


def test_help_lists_the_commands(command):
    out = command("--help")
    assert out.returncode == 0
    for name in ("prepare", "train", "tune", "evaluate", "replicate", "dashboard", "predict"):
        assert name in out.stdout


def test_a_data_dir_with_wrong_files_is_one_line(tmp_path, command):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in data.SHA256:
        (bad / f"{name}.gz").write_bytes(b"not gzip at all")
    out = command("train", "--data-dir", str(bad), "--epochs", "1")
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {bad}/") and "truncated or corrupt" in out.stderr
    assert out.stderr.count("\n") == 1
    assert not (tmp_path / "mlflow.db").exists()
    assert not (bad / data.CACHE_NAME).exists()


def test_a_diverging_train_run_ends_failed_with_one_line(command, data_dir):
    out = command("train", "--lr", "1e9", "--epochs", "3", "--data-dir", str(data_dir))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: training diverged at epoch")
    runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
    assert [r.info.status for r in runs] == ["FAILED"]


def test_a_malformed_space_stops_tune_before_any_trial(tmp_path, command, data_dir):
    (tmp_path / "bad.yaml").write_text("lr: {type: float, low: 0.1, high: 0.01}\n")
    out = command("tune", "--space", "bad.yaml", "--data-dir", str(data_dir))
    assert out.returncode == 2
    assert (
        out.stderr
        == "error: bad.yaml: lr: `low <= high` must hold, but got (low=0.1, high=0.01).\n"
    )
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()


HEAVY = ("torch", "mlflow", "optuna", "matplotlib")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["train", "--help"],
        ["tune", "--help"],
        ["replicate", "--help"],
        ["train", "--lr", "-1"],
        ["tune", "--epochs", "-1"],
        ["train", "--model", "vgg"],
        ["train", "--recipe", "fast"],
        ["dashboard", "--port", "0"],
    ],
)
def test_help_and_argument_errors_import_no_heavy_library(args):
    # What keeps `--help` and argument errors instant (the time itself is in the benchmark);
    # a fresh process, since this one has imported them all.
    import subprocess
    import sys

    code = (
        "import sys\nfrom pipeline.cli.app import main\n"
        "sys.argv = ['pipeline', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stderr.strip().splitlines()[-1] == "[]", out.stderr
