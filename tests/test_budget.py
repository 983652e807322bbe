"""The default study fits the machine: trial length from a timed epoch, pruning from epoch 1,
a cap on how far the last trial runs past the budget, and the lines that say what happened."""

import dataclasses
import datetime

import optuna
import pytest

from pipeline.core.config import TrainConfig
from pipeline.core.training import EpochEnd
from pipeline.tuning import summary
from pipeline.tuning.attrs import EPOCHS_ATTR, STUDY_ID_ATTR
from pipeline.tuning.search import budget, sampler
from pipeline.tuning.tune_settings import TuneOptions

DIST = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}


@pytest.mark.parametrize(
    "epoch_s, timeout, most, expected",
    [
        (4.0, 540, 20, 20),  # the fast 2-core Xeon: 20 epochs take 80 s, under 37% of 540 s
        (13.2, 540, 20, 14),  # the slow 2-core EPYC: 14 epochs take 185 s
        (12.1, 540, 20, 14),  # the emulated one
        (30.0, 540, 20, 5),
        (13.2, 2000, 20, 20),  # a longer budget buys the whole length back
        (1000.0, 540, 20, 1),  # nothing fits: the shortest
        (4.0, 540, 10, 10),  # never more than the model's own length
        (4.0, 540, 12, 10),  # a tier, not 12: the same on one machine from run to run
        (4.0, None, 20, 20),  # no budget: the model's own
    ],
)
def test_trials_are_the_longest_tier_that_takes_at_most_37_percent_of_the_budget(
    epoch_s, timeout, most, expected
):
    assert budget.fitted_epochs(epoch_s, timeout, most) == expected


def test_halving_compares_trials_from_epoch_1_without_waiting_for_finished_ones():
    assert sampler.halving_rungs(20) == (1, 3, 9)
    assert sampler.halving_rungs(14) == (1, 3, 9)  # up to 2/3 of the trial
    assert sampler.halving_rungs(10) == (1, 3)
    assert sampler.halving_rungs(2) == (1,)
    assert sampler.halving_rungs(1) == ()
    study = optuna.create_study(direction="maximize", pruner=sampler.make_pruner("halving", 14))
    verdicts = []
    for curve in (
        (0.85, 0.87, 0.88, 0.89),
        (0.84, 0.9),
        (0.86, 0.86, 0.87, 0.80),
        (0.87, 0.88, 0.89, 0.88),
    ):
        trial = study.ask()
        verdict = []
        for epoch, acc in enumerate(curve, 1):
            trial.report(acc, epoch)
            verdict.append(trial.should_prune())
            if verdict[-1]:
                break
        verdicts.append(verdict)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert verdicts == [
        [False, False, False, False],  # the first goes on: nothing to compare with
        [True],  # behind it at epoch 1: stopped, no finished trial needed
        [False, False, True],  # best at epoch 1, behind at epoch 3
        [False, False, False, False],  # best at 1 and 3 (epoch 4 is no rung)
    ]


def test_halving_stops_a_trial_stuck_at_chance_and_none_when_trials_have_one_epoch():
    study = optuna.create_study(direction="maximize", pruner=sampler.make_pruner("halving", 20))
    trial = study.ask()
    for epoch, acc in enumerate((0.25, 0.10, 0.10), 1):
        trial.report(acc, epoch)
    assert trial.should_prune()  # the first trial, at epoch 3, below 0.15
    assert isinstance(sampler.make_pruner("halving", 1).inner, optuna.pruners.NopPruner)
    last = sampler.make_pruner("halving", 10).inner
    assert last.last == 3 and isinstance(last.inner, optuna.pruners.SuccessiveHalvingPruner)


def test_the_default_is_halving_and_the_expected_epochs_follow_its_rungs():
    assert TuneOptions().resolve().pruner == "halving"
    # 14 epochs: all reach 1, a third 3, a ninth 9, a 27th 14
    assert sampler.expected_epochs(14, "halving") == pytest.approx(1 + 2 / 3 + 6 / 9 + 5 / 27)
    assert sampler.expected_epochs(14, "percentile") == 14


def test_a_trial_that_would_end_far_past_the_budget_stops(monkeypatch):
    clock = iter([100.0, 110.0, 130.0])
    monkeypatch.setattr(budget.time, "monotonic", lambda: next(clock))
    # started at 100, deadline 150, 10 s per epoch, 14 epochs: may end until 150 + 108
    guard = budget.Overtime(deadline=150.0, overtime=108.0, epochs=14)
    guard(EpochEnd(1, {}, None))  # at 110: ends at 240, 90 s late: goes on
    with pytest.raises(optuna.TrialPruned, match="it would end 160 s after the study's budget"):
        guard(EpochEnd(2, {}, None))  # at 130, 15 s per epoch: ends at 310


def test_a_new_study_gets_the_fitted_length_and_a_resumed_one_its_own(
    tmp_path, monkeypatch, capsys, tiny_data
):
    opts = TuneOptions(storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    settings = opts.resolve()
    storage = optuna.storages.RDBStorage(settings.storage)
    monkeypatch.setattr(budget, "epoch_seconds", lambda config, data: 13.2)
    fitted = budget.fit(settings, tiny_data, storage, epochs_given=False)
    line = capsys.readouterr().out
    assert fitted.epochs == 14
    assert line.startswith(
        "this machine: ~13.2 s per epoch of the 1024-512 FCN (batch 256); "
        "trials of 14 epochs fitted to this machine (--epochs to choose); "
        "the budget (--timeout 540 s) fits about 3 such trials, or about "
    )
    assert line.rstrip().endswith("when the pruner stops them as early as it can")
    sampler.open_study(fitted, storage)
    attrs = storage.get_study_user_attrs(storage.get_study_id_from_name("fcn"))
    assert attrs[EPOCHS_ATTR] == 14 and attrs.keys() == {EPOCHS_ATTR, STUDY_ID_ATTR}
    monkeypatch.setattr(budget, "epoch_seconds", lambda config, data: 1.0)  # a faster machine
    resumed = budget.fit(settings, tiny_data, storage, epochs_given=False)
    assert resumed.epochs == 14
    assert "trials of 14 epochs as this study began" in capsys.readouterr().out
    given = budget.fit(
        dataclasses.replace(opts, study_name="other", epochs=3).resolve(),
        tiny_data,
        storage,
        epochs_given=True,
    )
    assert given.epochs == 3


def test_the_reference_is_the_first_start_point_else_the_model_s_defaults():
    settings = TuneOptions().resolve()
    assert budget.reference_config(settings).hidden == (1024, 512)
    bare = dataclasses.replace(settings, space=dataclasses.replace(settings.space, enqueue=()))
    assert budget.reference_config(bare) == TrainConfig(model="fcn", epochs=1)


def finished(study, value, minutes, fixed=None):
    """A trial that ran from `minutes` to `minutes` + 1 (a start point with `fixed`)."""
    start = datetime.datetime(2026, 1, 1) + datetime.timedelta(minutes=minutes)
    trial = optuna.trial.create_trial(
        value=value,
        params={"lr": 1e-3},
        distributions=DIST,
        system_attrs={"fixed_params": fixed} if fixed else None,
    )
    trial.datetime_start, trial.datetime_complete = start, start + datetime.timedelta(minutes=1)
    study.add_trial(trial)


def test_a_study_where_tpe_never_ran_and_nothing_was_pruned_says_so():
    study = optuna.create_study(direction="maximize")
    finished(study, 0.90, 0, fixed={"lr": 1e-3})
    finished(study, 0.89, 1, fixed={"lr": 1e-3})
    settings = TuneOptions(epochs=14).resolve()
    assert set(summary.sampled_by(study).values()) == {"start"}
    lines = summary.summary(study, settings).splitlines()
    assert lines[-2:] == [
        "note: the search never started: all 2 trials were start points or random start-up "
        "trials (TPE takes over once 6 have finished); for a real search give the study more "
        "time (--timeout 1080) or shorter trials (--epochs 7)",
        "note: the pruner stopped no trial: all 2 ran their 14 epochs; give the study more "
        "time (--timeout 1080) or shorter trials (--epochs 7)",
    ]
    for minute in range(2, 7):  # 5 random start-up trials: 7 finished when the next begins
        finished(study, 0.80, minute)
    finished(study, 0.91, 8)
    kinds = summary.sampled_by(study)
    assert [kinds[n] for n in range(8)] == ["start"] * 2 + ["random"] * 5 + ["tpe"]
    assert not [
        ln
        for ln in summary.summary(study, settings).splitlines()
        if ln.startswith("note: the search")
    ]
