"""How replicate and tune divide their work over worker processes, without training."""

import pytest
import torch

from pipeline.core.errors import ConfigError
from pipeline.core.training import default_workers
from pipeline.replication.experiments import TABLES, variant_keys
from pipeline.replication.pool import plan
from pipeline.replication.replicate_settings import ReplicateSettings


def test_every_variant_and_seed_is_planned_once_under_its_first_table_cnn_first():
    settings = ReplicateSettings.build(seeds=3)
    tables = {t.number: f"run-{t.number}" for t in TABLES}
    jobs = plan(settings, [0, 1, 2], tables, "top")
    assert sorted((j.key, j.seed) for j in jobs) == sorted(
        (k, s) for k in variant_keys() for s in (0, 1, 2)
    )
    for job in jobs:
        first = next(t for t in TABLES if job.key in t.variants)
        assert (job.table, job.table_run_id, job.top_run_id) == (
            first.number,
            f"run-{first.number}",
            "top",
        )
    models = [settings.config(j.key, j.seed).model for j in jobs]
    assert models == sorted(models, key=lambda m: m == "fcn") and models[0] != "fcn"


def test_workers_share_the_threads():
    settings = ReplicateSettings.build(workers=2)
    assert settings.workers == 2
    assert settings.threads == max(1, torch.get_num_threads() // 2)
    assert ReplicateSettings.build().workers == default_workers() >= 1


@pytest.mark.parametrize("name", ["seeds", "epochs", "cnn_epochs", "workers"])
def test_negative_settings_are_refused(name):
    with pytest.raises(ConfigError, match=f"{name}: -1 must be an integer from 0 to"):
        ReplicateSettings.build(**{name: -1})


@pytest.mark.parametrize(
    "n_trials, workers, expected",
    [
        (30, 2, [15, 15]),
        (5, 2, [3, 2]),
        (1, 2, [1]),
        (0, 2, [0, 0]),
        (7, 1, [7]),
        (2, 3, [1, 1]),
    ],
)
def test_tune_splits_its_trials_over_its_workers(n_trials, workers, expected):
    from pipeline.tuning.tune_settings import shares

    assert shares(n_trials, workers) == expected
