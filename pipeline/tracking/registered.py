"""The MLflow registry's names for our models: each network's registered model and the alias
of its champion, which `tune` moves (tuning/registry/champion.py) and `evaluate`, `predict` and
the replication report read. Standard library only: `--help` names the default URI.
"""

from __future__ import annotations

CHAMPION_ALIAS = "champion"


def registry_name(model: str) -> str:
    """The registered model of network `model` (fcn, study_cnn, fast_cnn)."""
    return f"fashion-mnist-{model}"


def champion_uri(model: str) -> str:
    return f"models:/{registry_name(model)}@{CHAMPION_ALIAS}"


# tune's default network's champion (TuneOptions.model)
DEFAULT_MODEL_URI = champion_uri("fcn")
