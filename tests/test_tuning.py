"""tune on tiny synthetic data with private stores: runs, tags, states, resume, failures."""

import gc

import mlflow
import optuna
import pytest

from pipeline.core.errors import UserError
from pipeline.tuning import study as study_module
from pipeline.tuning import summary
from pipeline.tuning.attrs import MODEL_ID_ATTR, RETRY_OF_ATTR
from pipeline.tuning.registry import logged_models
from pipeline.tuning.search import objective, sampler
from pipeline.tuning.search.sampler import open_study
from pipeline.tuning.study import run_trials, tune
from pipeline.tuning.workers import storage


def runs():
    return mlflow.search_runs(experiment_names=["tests"], output_format="list")


def children_of(parent_id):
    return [r for r in runs() if r.data.tags.get("mlflow.parentRunId") == parent_id]


def test_a_study_leaves_one_parent_and_a_child_run_per_trial(settings, tiny_data):
    s = settings()
    study = tune(s, tiny_data)
    assert len(study.trials) == 3
    parents = [r for r in runs() if r.data.tags.get("tune_parent") == "true"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["study_name"] == "s"
    assert parent.data.metrics["best_val_acc"] == pytest.approx(study.best_value)
    assert {f"best_{k}" for k in study.best_params} <= set(parent.data.params)
    client = mlflow.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "space.yaml", "optuna", "confusion_matrix.png"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert {
        "optuna/optimization_history.png",
        "optuna/intermediate_values.png",
        "optuna/param_importances.png",
        "optuna/parallel_coordinate.png",
    } <= plots

    children = children_of(parent.info.run_id)
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == [0, 1, 2]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["trial_state"] == "COMPLETE"
        assert child.data.tags["study_name"] == "s"
        assert "lr" in child.data.params and "val_acc" in child.data.metrics
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")] == [1, 2]
        child_artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert "curves.png" in child_artifacts

    # Every completed trial's network is a logged model of its run, its final metrics linked
    # to it and to the split they were measured on.
    models = logged_models.ranked(parent.info.experiment_id, logged_models.study_tags(s, study))
    assert sorted(m.tags["trial_number"] for m in models) == ["0", "1", "2"]
    for model in models:
        trial = study.trials[int(model.tags["trial_number"])]
        assert model.model_id == trial.user_attrs[MODEL_ID_ATTR]
        assert model.source_run_id == trial.user_attrs["mlflow_run_id"]
        linked = {m.key: (m.value, m.dataset_name, m.step) for m in model.metrics}
        assert linked["val_acc"] == (trial.value, "fashion-mnist-validation", 2)
        assert linked["test_acc"][1:] == ("fashion-mnist-test", 2)
        assert linked["train_loss"][1] == "fashion-mnist-training"
    assert [logged_models.val_acc(m) for m in models] == sorted(
        (t.value for t in study.trials), reverse=True
    )

    # The champion is the best trial's own logged model, registered as it is.
    champion = client.get_model_version_by_alias("fashion-mnist-fcn", "champion")
    assert champion.tags["trial_number"] == str(study.best_trial.number)
    assert champion.source == f"models:/{study.best_trial.user_attrs[MODEL_ID_ATTR]}"
    model = mlflow.pytorch.load_model("models:/fashion-mnist-fcn@champion")
    assert model(tiny_data.test.images.float()).shape == (32, 10)


def test_the_same_name_resumes_the_study_with_new_configs(settings, tiny_data):
    s = settings(n_trials=2)
    first = tune(s, tiny_data)
    second = tune(s, tiny_data)
    assert len(second.trials) == 4 and second.trials[0].params == first.trials[0].params
    params = [tuple(sorted(t.params.items())) for t in second.trials]
    assert len(set(params)) == 4  # the resumed sampler does not replay the first configs
    assert len([r for r in runs() if r.data.tags.get("tune_parent") == "true"]) == 2


def test_pruned_trials_are_visible_as_pruned(settings, tiny_data, monkeypatch):
    monkeypatch.setattr(
        sampler, "make_pruner", lambda name, epochs: optuna.pruners.ThresholdPruner(lower=1.01)
    )
    study = tune(settings(n_trials=2), tiny_data)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    children = [r for r in runs() if "trial_number" in r.data.tags]
    assert {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["trial_state"] for c in children} == {"PRUNED"}
    assert all("pruned at epoch 1" in c.data.tags["trial_reason"] for c in children)


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(settings, tiny_data):
    space = "lr: {type: categorical, choices: [1.0e+12]}\noptimizer: sgd\nbatch_size: 32\n"
    study = tune(settings(space_text=space, n_trials=2), tiny_data)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert all("diverged" in t.user_attrs["fail_reason"] for t in study.trials)
    children = [r for r in runs() if "trial_number" in r.data.tags]
    assert len(children) == 2
    assert {c.info.status for c in children} == {"FAILED"}
    assert all("diverged" in c.data.tags["trial_reason"] for c in children)
    parent = next(r for r in runs() if r.data.tags.get("tune_parent") == "true")
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_fail"] == 2


def test_ctrl_c_leaves_nothing_running_and_the_next_call_resumes(settings, tiny_data, monkeypatch):
    s = settings(n_trials=3)

    def interrupt(self, end):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(objective.PruneOnValAcc, "__call__", interrupt)
        with pytest.raises(KeyboardInterrupt):
            tune(s, tiny_data)
    assert mlflow.active_run() is None
    statuses = {r.info.status for r in runs()}
    assert statuses == {"KILLED"}  # the parent and the interrupted trial's child
    study = tune(s, tiny_data)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert "RUNNING" not in {r.info.status for r in runs()}


def test_an_existing_study_with_another_direction_is_refused(settings):
    s = settings()
    optuna.create_study(study_name="s", storage=s.storage, direction="minimize")
    with pytest.raises(UserError, match="direction MINIMIZE"):
        open_study(s)


def test_an_existing_multi_objective_study_is_refused_in_one_line(settings):
    s = settings()
    optuna.create_study(study_name="s", storage=s.storage, directions=["maximize"] * 2)
    with pytest.raises(
        UserError, match="study 's' .* multi-objective .* choose another --study-name"
    ):
        open_study(s)


@pytest.fixture
def no_summary(monkeypatch):
    """Skip the study's summary and champion (seconds per call): these tests are about trials."""
    monkeypatch.setattr(summary, "log_study", lambda *args: None)


def history(study):
    """What a study did: each trial's params, value and per-epoch validation accuracy."""
    return [
        (t.number, t.state.name, t.params, t.value, t.intermediate_values) for t in study.trials
    ]


def test_the_same_seed_and_config_give_the_same_study(settings, tiny_data, tmp_path, no_summary):
    first = tune(settings(n_trials=2), tiny_data)
    again = settings(n_trials=2, storage=f"sqlite:///{tmp_path / 'again.db'}")
    assert history(tune(again, tiny_data)) == history(first)


def test_a_resumed_study_continues_the_sampler_s_sequence(settings, tiny_data, no_summary):
    in_one_go = tune(settings(n_trials=2, study_name="one"), tiny_data)
    resumed = settings(n_trials=1, study_name="two")
    tune(resumed, tiny_data)
    resumed = tune(resumed, tiny_data)
    # trial k's draws depend on (seed, k): 1 + 1 trials are exactly the 2 of one call
    assert [h[1:] for h in history(resumed)] == [h[1:] for h in history(in_one_go)]


def test_the_study_wide_cap_counts_every_worker_s_trials(settings, tiny_data, no_summary):
    s = settings(n_trials=10, total_trials=2)
    tune(s, tiny_data)
    study = tune(s, tiny_data)  # a second worker finds the study full at once
    assert len(study.trials) == 2


def duplicate_table():
    from sqlalchemy.exc import ProgrammingError

    return ProgrammingError(
        "CREATE TABLE studies", {}, Exception('relation "studies" already exists')
    )


def duplicate_version():
    from sqlalchemy.exc import IntegrityError

    return IntegrityError("INSERT INTO alembic_version", {}, Exception("duplicate key"))


@pytest.mark.parametrize("losses, opened", [(2, True), (5, False)])
def test_workers_racing_to_create_a_fresh_storage_retry(tmp_path, monkeypatch, losses, opened):
    """Workers started together on a fresh database lose races to create Optuna's tables
    (PostgreSQL: "relation already exists") and then to stamp its schema version ("duplicate
    key"); a loser retries (4 times), a fifth loss is raised."""
    real, calls = storage.WorkerStorage, []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) <= losses:
            raise duplicate_table() if len(calls) % 2 else duplicate_version()
        return real(*args, **kwargs)

    monkeypatch.setattr(storage, "WorkerStorage", racing)
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    if opened:
        assert isinstance(storage.make_storage(url, None, None, None), real)
        assert len(calls) == losses + 1
    else:
        with pytest.raises(Exception, match="already exists"):
            storage.make_storage(url, None, None, None)
        assert len(calls) == 5


def test_the_per_trial_sampler_is_multivariate_group_tpe_and_repeatable(monkeypatch):
    """After its start-up trials, TPE samples each group of co-occurring params jointly
    (sample_relative); the same seed gives the same configs, trial k's draws depend on k, and
    two study seeds do not share draws."""
    relative = []
    real = optuna.samplers.TPESampler.sample_relative

    def spy(self, study, trial, search_space):
        params = real(self, study, trial, search_space)
        relative.append((trial.number, sorted(params)))
        return params

    monkeypatch.setattr(optuna.samplers.TPESampler, "sample_relative", spy)

    def objective(trial):
        depth = trial.suggest_int("depth", 1, 2)
        widths = [trial.suggest_int(f"width_{i}", 8, 64) for i in range(depth)]
        return trial.suggest_float("lr", 1e-3, 1e-1, log=True) * sum(widths)

    def configs(seed, n=10):
        study = optuna.create_study(direction="maximize", sampler=sampler.make_sampler(seed))
        study.optimize(objective, n_trials=n)
        return [t.params for t in study.trials]

    first, second = configs(0), configs(1)
    assert any(number >= 6 and params for number, params in relative)
    assert configs(0) == first and second != first
    # each study seed its own stream: with `seed + trial number` as the per-trial seed, study
    # 1's random start-up trial k drew what study 0's trial k + 1 drew
    assert all(second[k] != first[k + 1] for k in range(5))


@pytest.mark.parametrize("name, prunes", [("percentile", [False, True]), ("median", [True, True])])
def test_the_default_pruner_stops_only_the_bottom_quarter_from_epoch_3(name, prunes):
    # Completed trials' val_acc at epoch 3, as in a default FCN study (docs/tuning.md): good
    # configurations are within half a point there, and their order says little about epoch 20.
    study = optuna.create_study(direction="maximize", pruner=sampler.make_pruner(name))
    for acc in (0.73, 0.824, 0.864, 0.866, 0.867, 0.869, 0.869):
        study.add_trial(
            optuna.trial.create_trial(
                value=acc + 0.04,
                intermediate_values={1: acc - 0.05, 2: acc - 0.02, 3: acc},
                params={},
                distributions={},
            )
        )
    verdicts = []
    for acc in (0.864, 0.80):  # a good configuration a little behind; a poor one
        trial = study.ask()
        trial.report(acc - 0.05, 1)
        trial.report(acc - 0.05, 2)
        assert not trial.should_prune()  # epochs 1-2: never
        trial.report(acc, 3)
        verdicts.append(trial.should_prune())
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert verdicts == prunes


@pytest.mark.parametrize("name", ["percentile", "median"])
def test_a_trial_stuck_at_chance_is_stopped_at_epoch_3_before_any_trial_has_finished(name):
    # A collapsed FCN of a default study (seed 3): val_acc 0.2573, then 0.0951-0.1031 to the end.
    study = optuna.create_study(direction="maximize", pruner=sampler.make_pruner(name))
    verdicts = {}
    for curve in ((0.2573, 0.0951, 0.1025), (0.12, 0.14, 0.31)):  # collapsed; a slow learner
        trial = study.ask()
        for epoch, acc in enumerate(curve, 1):
            trial.report(acc, epoch)
            verdicts.setdefault(curve, []).append(trial.should_prune())
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert list(verdicts.values()) == [[False, False, True], [False, False, False]]
    hyperband = sampler.make_pruner("hyperband")  # TPE reads its brackets: left as Optuna's
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)


def test_the_summary_says_how_the_sampler_s_own_trials_fared_against_the_start_points():
    study = optuna.create_study(direction="maximize")
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    study.enqueue_trial({"lr": 1e-3})
    study.enqueue_trial({"lr": 3e-3})
    for value in (0.90, 0.905):  # the two start points
        trial = study.ask(dist)
        study.tell(trial, value)
    for value in (0.88, 0.9071):  # the sampler's own
        trial = study.ask(dist)
        study.tell(trial, value)
    # a dead worker's start point run again counts as a start point (tuning/workers/recovery.py)
    study.add_trial(
        optuna.trial.create_trial(
            value=0.95, params={"lr": 1e-3}, distributions=dist, user_attrs={RETRY_OF_ATTR: 0}
        )
    )
    start, own = summary.best_of_each_kind(study)
    assert (start.number, own.number) == (4, 3)
    assert summary.search_vs_start(study) == [
        "search vs start points: the sampler's best trial 3 (val_acc 0.9071) is 4.29 points "
        "behind the best start point, trial 4 (0.9500)"
    ]
    study.add_trial(optuna.trial.create_trial(value=0.96, params={"lr": 2e-3}, distributions=dist))
    assert "trial 5 (val_acc 0.9600) is 1.00 points ahead of" in summary.search_vs_start(study)[0]


def test_trials_after_the_first_run_with_the_heap_frozen_and_the_loop_unfreezes_it(settings):
    """gc_after_trial's full collection walks only what the trials make (pipeline/tuning/
    study.py): the heap is frozen after the first trial, and given back when the loop ends."""
    frozen_during = []

    def objective(trial):
        frozen_during.append(gc.get_freeze_count())
        return trial.suggest_float("x", 0, 1)

    resolved = settings(n_trials=3)
    study = optuna.create_study(
        storage=resolved.storage, study_name=resolved.study_name, direction="maximize"
    )
    assert gc.get_freeze_count() == 0
    run_trials(study, objective, resolved)
    assert len(frozen_during) == 3
    assert frozen_during[0] == 0 and all(n > 0 for n in frozen_during[1:])
    assert gc.get_freeze_count() == 0


def test_a_worker_that_finds_the_study_full_looks_again_soon_not_a_heartbeat_later(
    settings, monkeypatch
):
    """Another worker's trial runs in a full study: this worker waits FULL_STUDY_POLL_S before
    it looks again (then ends with that trial), not a whole heartbeat."""
    waits = []
    monkeypatch.setattr(study_module, "pause", waits.append)
    resolved = settings(total_trials=1, heartbeat=60)
    study = optuna.create_study(
        storage=resolved.storage, study_name=resolved.study_name, direction="maximize"
    )
    study.ask()  # the other worker's trial, RUNNING
    assert study_module.owes_trials(study, resolved)  # it may still come back as a retry
    assert waits == [study_module.FULL_STUDY_POLL_S] and study_module.FULL_STUDY_POLL_S < 60
