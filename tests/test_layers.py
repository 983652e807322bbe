"""The architecture reads from the tree: the layer contracts in pyproject.toml hold.

import-linter (`lint-imports`, also in `make lint`) checks them statically, imports inside
functions included, without importing torch or MLflow: the package order cli > replication >
tuning > serving > tracking > core, tuning's own layers, a core that imports neither mlflow nor
optuna, and no cycle between the modules or packages of any one package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_the_layer_contracts_hold_on_the_tree(capsys):
    status = lint_imports(str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "Contracts: 4 kept, 0 broken." in out


@pytest.mark.parametrize(
    ("module", "upward", "contract"),
    [
        ("core/words.py", "from pipeline.tracking import store", "are layered"),
        ("core/words.py", "import mlflow", "knows nothing of MLflow"),
        ("tracking/tags.py", "from pipeline.serving import evaluate", "are layered"),
        ("tuning/space.py", "from pipeline.tuning.search import sampler", "tuning is layered"),
        ("replication/report/inputs.py", "from pipeline.replication import pool", "No cycle"),
    ],
    ids=[
        "core-to-tracking",
        "core-to-mlflow",
        "tracking-to-serving",
        "tuning-inner",
        "module-cycle",
    ],
)
def test_an_upward_import_breaks_the_check(tmp_path, module, upward, contract):
    """A copy of the package with one import added where it does not belong, even inside a
    function: lint-imports fails and names the contract."""
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / "pipeline" / module
    target.write_text(target.read_text() + f"\n\ndef _late():\n    {upward}\n")
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run(
        [lint, "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode == 1, out.stdout + out.stderr
    broken = out.stdout[out.stdout.index("Broken contracts") :]
    assert contract in broken, out.stdout
