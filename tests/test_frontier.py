"""The accuracy-vs-time frontier (`tune --objectives val_acc,train_time_s`): a multi-objective
study over model families, end to end at a tiny size on real FashionMNIST, and the replication
report's answer to claim 5 along its front."""

from __future__ import annotations

import dataclasses
import json
import re

import mlflow
import optuna
import pytest

from pipeline.core import data
from pipeline.core.metrics import TRAIN_TIME, VAL_ACC
from pipeline.core.recipes import RECIPES
from pipeline.replication.report.frontier import frontier_markdown
from pipeline.tuning import directions, pareto, summary
from pipeline.tuning.study import tune
from pipeline.tuning.tune_settings import TuneOptions
from pipeline.tuning.workers.processes import helper_argv

# Both families, one epoch each (--epochs 1 caps the space's ranges), tiny FCN widths; the
# start points make sure each family runs.
TINY_FRONTIER = """
model:
  fcn:
    epochs: {type: int, low: 1, high: 3}
    hidden: {type: layers, depth: [1, 1], width: {low: 8, high: 32, log: true}}
    optimizer: adam
    lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  fast_cnn:
    epochs: 2
    optimizer: momentum
    lr: {type: float, low: 0.05, high: 0.2, log: true}
    batch_norm: true
batch_size: 64
enqueue:
  - {model: fcn, epochs: 3}
  - {model: fast_cnn}
"""


def test_the_objective_names_are_the_training_metrics():
    assert (directions.VAL_ACC, directions.TRAIN_TIME) == (VAL_ACC, TRAIN_TIME)


@pytest.fixture(scope="module")
def small_data(data_dir) -> data.FashionMNIST:
    """Real FashionMNIST, 1000 images per split: a fast CNN epoch takes a second."""
    full = data.load(data_dir)
    cut = [data.Split(s.images[:1000], s.labels[:1000]) for s in (full.train, full.val, full.test)]
    return data.FashionMNIST(*cut, digest="first-1000")


def test_a_tiny_frontier_study_runs_end_to_end(tmp_path, tracking_env, small_data, capsys):
    space = tmp_path / "frontier.yaml"
    space.write_text(TINY_FRONTIER)
    settings = TuneOptions(
        objectives=directions.FRONTIER,
        space=str(space),
        n_trials=4,
        epochs=1,
        timeout=0,
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
    ).resolve()
    assert (settings.study_name, settings.pruner, settings.epochs) == ("frontier", "none", 1)
    mlflow.set_experiment("tests")
    study = tune(settings, small_data)

    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == [VAL_ACC, TRAIN_TIME]
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert {t.user_attrs["model"] for t in study.trials} == {"fcn", "fast_cnn"}
    assert {t.user_attrs["epochs"] for t in study.trials} == {1}  # the cap
    assert all(t.intermediate_values == {} for t in study.trials)  # nothing reported

    runs = mlflow.search_runs(experiment_names=["tests"], output_format="list")
    [parent] = [r for r in runs if r.data.tags.get("tune_parent") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == [0, 1, 2, 3]
    for child in children:
        trial = study.trials[int(child.data.tags["trial_number"])]
        assert child.data.tags["trial_state"] == "COMPLETE"
        assert child.data.params["model"] == trial.user_attrs["model"]
        assert trial.values == [child.data.metrics[VAL_ACC], child.data.metrics[TRAIN_TIME]]

    assert parent.data.tags["frontier"] == "true"
    assert parent.data.params["objectives"] == "val_acc,train_time_s"
    assert parent.data.metrics["front_size"] == len(study.best_trials)
    client = mlflow.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "frontier.json", "frontier.yaml", "optuna"} <= artifacts
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "optuna")] == [
        "optuna/pareto_front.png"
    ]
    assert client.search_registered_models() == []  # a front has no single champion
    out = capsys.readouterr().out
    assert "no champion registered" in out
    lines = summary.summary(study)
    assert "Pareto front" in lines and "best:" not in lines

    latest = pareto.read_latest()
    assert latest["run_id"] == parent.info.run_id and len(latest["trials"]) == 4
    section = "\n".join(frontier_markdown(latest))
    assert "## Claim 5 along the accuracy-vs-time frontier" in section
    assert section.count("| fcn") + section.count("| FCN (trial") + section.count(
        "| fast CNN (trial"
    ) == len(study.best_trials)
    assert "Best model by time budget:" in section


def test_a_frontier_study_is_resumed_and_never_mistaken_for_a_val_acc_one(tmp_path, tracking_env):
    from pipeline.core.errors import UserError
    from pipeline.tuning.search.sampler import open_study
    from pipeline.tuning.workers.storage import check_storage

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = tmp_path / "frontier.yaml"
    space.write_text(TINY_FRONTIER)
    front = TuneOptions(
        objectives=directions.FRONTIER, space=str(space), storage=storage, study_name="s"
    ).resolve()
    study = open_study(front)
    assert [t.system_attrs["fixed_params"] for t in study.trials] == list(front.space.starts(3))
    assert open_study(front).study_name == "s"  # the same command resumes it
    with pytest.raises(UserError, match="multi-objective .* choose another --study-name"):
        check_storage(TuneOptions(storage=storage, study_name="s").resolve())
    optuna.create_study(study_name="fcn-only", storage=storage, direction="maximize")
    with pytest.raises(
        UserError, match="exists with objective .* a frontier study optimizes val_acc,train_time_s"
    ):
        check_storage(
            TuneOptions(
                objectives=directions.FRONTIER,
                space=str(space),
                storage=storage,
                study_name="fcn-only",
            ).resolve()
        )


def test_a_frontier_of_one_family_keeps_its_model_and_epochs(tmp_path):
    settings = TuneOptions(
        model="fast_cnn", objectives=directions.FRONTIER, space="search_spaces/cnn.yaml"
    ).resolve()
    assert (settings.model, settings.study_name, settings.epochs, settings.pruner) == (
        "fast_cnn",
        "fast_cnn-frontier",
        10,
        "none",
    )
    assert TuneOptions().resolve().pruner == "halving"


def test_the_shipped_frontier_space_s_fast_cnn_family_is_the_recipe_around_its_lr():
    """The fast_cnn family names its recipe instead of copying it: it fixes nothing itself,
    and its start point is the recipe (at most tune's --epochs)."""
    settings = TuneOptions(objectives=directions.FRONTIER, epochs=4).resolve()
    space = settings.space
    assert space.path.name == "frontier.yaml" and settings.model == "fcn,fast_cnn"
    assert space.family_recipes == {"fast_cnn": "fast_cnn"}
    assert all(p.kind != "fixed" for p in space.families["fast_cnn"])
    configs = [
        space.sample(optuna.trial.FixedTrial(start), model="fcn", epochs=settings.epochs, seed=0)
        for start in space.starts(settings.epochs)
    ]
    assert [(c.model, c.epochs) for c in configs] == [("fcn", 4), ("fast_cnn", 4)]
    assert configs[1] == dataclasses.replace(RECIPES["fast_cnn"], epochs=4)


def trial(number, model, acc, seconds, epochs=1):
    return {
        "number": number,
        "model": model,
        "epochs": epochs,
        "val_acc": acc,
        "train_time_s": seconds,
        "run_id": f"r{number}",
    }


def test_the_report_answers_claim_5_at_each_budget_of_the_front():
    study = {
        "study_name": "frontier",
        "run_id": "p1",
        "trials": [
            trial(0, "fcn", 0.84, 3.0),
            trial(1, "fcn", 0.87, 20.0, 5),
            trial(2, "fcn", 0.86, 40.0),
            trial(3, "fast_cnn", 0.85, 30.0),
            trial(4, "fast_cnn", 0.91, 60.0, 2),
            trial(5, "study_cnn", 0.89, 70.0),
        ],
    }
    lines = frontier_markdown(study)
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    # budgets where the best accuracy rises: 3 s (FCN), 20 s (FCN), 60 s (fast CNN)
    assert [r.split(" | ")[0] for r in rows] == ["| 3.0", "| 20.0", "| 60.0"]
    assert (
        rows[0] == "| 3.0 | FCN (trial 0, 1 ep) | 84.00% (1 ep) | none this fast | none this fast |"
    )
    assert (
        rows[2] == "| 60.0 | fast CNN (trial 4, 2 ep) | 87.00% (5 ep) | 91.00% (2 ep) | "
        "none this fast |"
    )
    assert lines[-2] == (
        "Best model by time budget: the FCN from 3.0 s; the fast CNN from "
        "60.0 s. So claim 5 holds from 60.0 s on; below that the FCN gives "
        "more accuracy for the time (no CNN trial does better in so little "
        "time)."
    )
    assert frontier_markdown(None) == []


def test_the_frontier_section_survives_results_json(tmp_path):
    from pipeline.replication.report import text
    from pipeline.replication.report.inputs import from_json, to_json
    from tests.test_report import CLAIMED, fake_runs, make_input

    report = make_input(fake_runs(CLAIMED, 0.001))
    assert "accuracy-vs-time frontier" not in text.markdown(report)  # no frontier study yet
    report.frontier = {"study_name": "f", "run_id": "p", "trials": [trial(0, "fcn", 0.8, 2.0)]}
    again = from_json(json.loads(json.dumps(to_json(report))))
    assert again.frontier == report.frontier
    assert "## Claim 5 along the accuracy-vs-time frontier" in text.markdown(again)
    old = to_json(report)
    del old["frontier"]  # a results.json from before the frontier
    assert from_json(old).frontier is None


def test_tune_workers_helpers_run_the_same_frontier():
    opts = TuneOptions(objectives=directions.FRONTIER, workers=2, n_trials=5, epochs=2)
    [helper] = helper_argv(opts, opts.resolve())
    assert helper[helper.index("--objectives") + 1] == directions.FRONTIER
    assert helper[helper.index("--epochs") + 1] == "2"  # the cap, not a family's own epochs
    assert helper[helper.index("--study-name") + 1] == "frontier"


@pytest.mark.parametrize(
    "winners, verdict",
    [
        (["fcn", "fcn"], "no CNN wins at any budget of this study: claim 5 does not hold"),
        (
            ["fast_cnn", "fast_cnn"],
            "a CNN wins at every budget, the fastest included: claim 5 holds",
        ),
        (
            ["fcn", "fast_cnn", "fcn"],
            "the FCN wins the largest budget again: claim 5 does not hold",
        ),
    ],
)
def test_the_claim_5_sentence_follows_the_winners(winners, verdict):
    from pipeline.replication.report.frontier import answer

    points = [trial(i, m, 0.8 + 0.01 * i, 10.0 * (i + 1)) for i, m in enumerate(winners)]
    assert verdict in answer(points)


def test_the_command_prints_the_front_and_says_why_no_champion(command, data_dir, tmp_path):
    """Through the CLI as a user types it: one family (tiny FCNs), real data, two trials."""
    (tmp_path / "front.yaml").write_text(
        "model:\n  fcn:\n    epochs: 1\n"
        "    hidden: {type: layers, depth: [1, 1], width: {low: 8, high: 16}}\n"
        "    lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"
        "optimizer: adam\nbatch_size: 512\n"
    )
    out = command(
        "tune",
        "--objectives",
        directions.FRONTIER,
        "--space",
        "front.yaml",
        "--n-trials",
        "2",
        "--data-dir",
        str(data_dir),
    )
    assert out.returncode == 0, out.stderr
    assert "study frontier: 2 trials (2 complete, 0 pruned, 0 fail)" in out.stdout
    assert re.search(
        r"Pareto front \((1 trial|2 trials); val_acc up, train_time_s down\):\n"
        r"  trial [01]: fcn, 1 epoch, val_acc 0\.\d{4} in \d+\.\d s\n",
        out.stdout,
    ), out.stdout
    assert "no champion registered" in out.stdout and "Traceback" not in out.stderr
