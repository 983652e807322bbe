"""What pipeline/tuning/workers/optuna_private.py takes from Optuna's internals, pinned: an Optuna
upgrade that changes it fails here, loudly, instead of silently uncapping studies.

Nothing else may use a private Optuna name; the cap must be exact with workers racing.
"""

import inspect
import re
import threading
from pathlib import Path

import optuna
import pytest
from optuna.storages._rdb import models

from pipeline.tuning.workers.optuna_private import CappedRDBStorage, StudyFull
from tests.services import Postgres, postgres_bin

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
ROOT = PACKAGE.parent
PRIVATE = re.compile(r"optuna\.\w*\._|\._rng|_get_prepared_new_trial|\b_rdb\b")


def test_the_private_hook_and_models_are_as_the_adapter_expects():
    hook = optuna.storages.RDBStorage._get_prepared_new_trial
    assert list(inspect.signature(hook).parameters) == [
        "self",
        "study_id",
        "template_trial",
        "session",
    ]
    # Optuna calls the hook under the study row's lock, in the trial's transaction.
    source = inspect.getsource(optuna.storages.RDBStorage._create_new_trial)
    assert "for_update=True" in source and "self._get_prepared_new_trial(" in source
    assert {"study_id", "trial_id"} <= set(models.TrialModel.__table__.columns.keys())
    assert {"trial_id", "key"} <= set(models.TrialSystemAttributeModel.__table__.columns.keys())
    # The retry's mark that the cap does not count (public API, documented).
    assert "failed_trial" in inspect.getsource(optuna.storages.RetryHeartbeatStaleTrialCallback)


def test_a_trial_is_created_and_its_failure_reported_where_the_adapter_expects():
    """A fresh trial names its taker in `_create_new_trial`, which Optuna's cache (wrapping
    every RDB storage of a study) calls instead of the public method; a stopped trial's report
    is dropped from the logger `_log_failed_trial` writes to."""
    from optuna.storages import _cached_storage
    from optuna.study import _optimize

    from pipeline.tuning.workers.optuna_private import FAILED_TRIAL_LOGGER

    create = optuna.storages.RDBStorage._create_new_trial
    assert list(inspect.signature(create).parameters) == ["self", "study_id", "template_trial"]
    cached = inspect.getsource(_cached_storage._CachedStorage.create_new_trial)
    assert "self._backend._create_new_trial(study_id, template_trial)" in cached
    assert _optimize._logger.name == FAILED_TRIAL_LOGGER
    assert inspect.getsource(_optimize._log_failed_trial).count("_logger.warning(") == 2


def test_no_other_module_uses_a_private_optuna_name():
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    users = [
        str(p.relative_to(ROOT))
        for p in sources
        if p.name != "optuna_private.py" and PRIVATE.search(p.read_text())
    ]
    assert users == []


@pytest.fixture(scope="module")
def postgres_url():
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries not found in /usr/lib/postgresql/*/bin")
    server = Postgres(bin_dir)
    yield server.secret_url  # this process's own clients only
    server.stop()


def test_the_cap_is_exact_with_workers_racing(postgres_url):
    """Workers asking for trials together, each until the study is full: exactly the cap."""
    cap, workers = 6, 4
    optuna.create_study(study_name="race", storage=postgres_url)
    start, errors = threading.Barrier(workers), []

    def worker() -> None:
        storage = CappedRDBStorage(postgres_url, max_trials=cap)
        study = optuna.load_study(study_name="race", storage=storage)
        start.wait()
        try:
            while True:
                study.tell(study.ask(), 0.5)
        except StudyFull:
            pass
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    trials = optuna.load_study(study_name="race", storage=postgres_url).trials
    assert [t.number for t in trials] == list(range(cap))


def test_a_queued_retry_is_never_refused_nor_counted(tmp_path):
    storage = CappedRDBStorage(f"sqlite:///{tmp_path / 'o.db'}", max_trials=1)
    study = optuna.create_study(storage=storage)
    study.tell(study.ask(), 0.5)
    with pytest.raises(StudyFull):
        study.ask()
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING, system_attrs={"failed_trial": 0}
        )
    )
    study.tell(study.ask(), 0.6)  # the queued retry runs
    assert len(study.trials) == 2
