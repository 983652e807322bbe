"""bench/search_sim.py: spaces judged on a surrogate of measured studies."""

import datetime
import math
import re

import numpy as np
import optuna
from typer.testing import CliRunner

from bench import search_sim

LR = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)


def accuracy(lr: float) -> float:  # best at lr 1e-3
    return 0.90 - 0.05 * (math.log10(lr) + 3) ** 2


def measured_study(url: str, seed: int) -> None:
    """A study of 20-epoch trials at 1 s an epoch; lr 1e-3 (its start point) under each seed."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(study_name=f"seed{seed}", storage=url, direction="maximize")
    start = datetime.datetime(2026, 1, 1)
    for number, lr in enumerate([1e-3, *10 ** rng.uniform(-4, -2, 24)]):
        value = accuracy(lr) + rng.normal(0, 5e-4)
        curve = {e: value - 0.002 * (20 - e) for e in range(1, 21)}
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=number,
                state=optuna.trial.TrialState.COMPLETE,
                value=value,
                datetime_start=start,
                datetime_complete=start + datetime.timedelta(seconds=20),
                params={"lr": lr},
                distributions={"lr": LR},
                user_attrs={},
                system_attrs={},
                intermediate_values=curve,
                trial_id=number,
            )
        )


def space(path, start_lr: float):
    path.write_text(
        "lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
        f"enqueue:\n  - {{lr: {start_lr}}}\n"
    )
    return path


def test_the_sampler_beats_a_poor_start_point_and_not_the_best_one(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    for seed in (0, 1):
        measured_study(url, seed)
    surrogate = search_sim.Surrogate(search_sim.measured_trials([url]))
    assert 1e-4 < surrogate.noise < 2e-3  # the start point's two values
    assert abs(surrogate.predict({"lr": 1e-3})[1] - 1.0) < 0.05  # seconds per epoch

    def gaps(start_lr):
        path = space(tmp_path / f"start{start_lr}.yaml", start_lr)
        runs = [
            search_sim.simulate(
                surrogate, str(path), seed, budget=240, n_trials=30, epochs=20, model="fcn"
            )
            for seed in range(4)
        ]
        assert all(n >= 12 for _, n in runs)  # 240 s of 20 s trials (3 s when pruned)
        return np.array([gap for gap, _ in runs])

    poor, best = gaps(1e-4), gaps(1e-3)  # 0.85 against 0.90
    assert poor.mean() > 0.02
    assert best.max() < 0.005 and poor.mean() > best.mean() + 0.02


def test_the_command_prints_one_line_per_space_and_refuses_an_empty_storage(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    for seed in (0, 1):
        measured_study(url, seed)
    path = space(tmp_path / "s.yaml", 1e-4)
    result = CliRunner().invoke(
        search_sim.app, [url, "--space", str(path), "--runs", "2", "--budget", "100"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("50 measured trials; seed-to-seed spread")
    assert lines[1].startswith(f"{path}: sampler's best - best start point +")
    # 100 s held 5 trials of 20 epochs at 1 s each; halving stops most at epoch 1 or 3
    assert re.search(r"of 2 runs, [\d.]+ trials$", lines[1])
    assert float(lines[1].split()[-2]) > 10

    empty = f"sqlite:///{tmp_path}/empty.db"
    optuna.create_study(study_name="none", storage=empty)
    result = CliRunner().invoke(search_sim.app, [empty, "--space", str(path)])
    assert result.exit_code == 2 and "no finished trial" in result.output
