"""The architecture reads from the tree: the core knows nothing of MLflow or Optuna."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = sorted(p.stem for p in (ROOT / "pipeline" / "core").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_neither_mlflow_nor_optuna(module):
    code = (f"import sys, pipeline.core.{module}\n"
            "print(sorted(m for m in ('mlflow', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"pipeline.core.{module} pulls in {out.stdout.strip()}"


def test_the_core_modules_are_there():
    assert {"config", "data", "models", "training"} <= set(CORE)
