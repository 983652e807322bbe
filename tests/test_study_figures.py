"""The parent run's study figures, drawn from in-memory studies over the shipped search spaces
with a made-up accuracy (no training): what a reader sees on each axis, and that labels do not
overlap at the size they are logged."""

import math

import matplotlib
import optuna
import pytest

from pipeline.tuning import parallel_figure
from pipeline.tuning import study_figures as plots
from pipeline.tuning.space import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def fake_study(space_file, model, n_trials, name="fake", starts=()):
    """Trials sampled from a real space, after its start points and `starts`; a made-up val_acc
    per epoch; the median pruner stops some, so intermediate values and pruned trials exist."""
    space = load_space(space_file)
    study = optuna.create_study(
        direction="maximize",
        study_name=name,
        sampler=optuna.samplers.TPESampler(seed=1),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
    )
    for start in (*space.enqueue, *starts):
        study.enqueue_trial(start)

    def objective(trial):
        config = space.sample(trial, model=model, epochs=10, seed=0)
        final = 0.9 - 0.03 * abs(math.log10(config.lr) + 2) - 0.05 * config.dropout
        for epoch in range(1, 11):
            acc = final - 0.2 / epoch + 0.002 * ((trial.number * 7 + epoch) % 5)
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return acc

    study.optimize(objective, n_trials=n_trials)
    return study


@pytest.fixture(scope="module")
def fcn_figures():
    # the FCN space with every choice of the study; one 3-layer trial for sure: every width
    # axis is drawn
    study = fake_study(
        "search_spaces/fcn_study.yaml",
        "fcn",
        30,
        starts=[{"n_layers": 3, "width_1": 1024, "width_2": 512, "width_3": 256}],
    )
    assert {t.state.name for t in study.trials} == {"COMPLETE", "PRUNED"}
    figs = plots.figures(study)
    for fig in figs.values():
        fig.canvas.draw()  # as savefig does: ticks and label sizes are final
    yield study, figs
    for fig in figs.values():
        plots.close(fig)


def axes_of(fig):
    """The parallel-coordinate figure's axes by parameter name (val_acc: the colour bar)."""
    host = fig.axes[0]
    return {ax.get_label(): ax for ax in [*fig.axes[1:], *host.child_axes]}


def drawn(axis):
    """The tick labels the figure shows: a locator also returns ticks just outside the view."""
    low, high = sorted(axis.get_view_interval())
    return [
        label
        for loc, label in zip(axis.get_majorticklocs(), axis.get_ticklabels())
        if low <= loc <= high and label.get_text()
    ]


def tick_texts(ax):
    return [label.get_text() for label in drawn(ax.yaxis)]


def boxes(labels):
    return [label.get_window_extent() for label in labels]


def overlapping(boxes_):
    return [(a, b) for i, a in enumerate(boxes_) for b in boxes_[i + 1 :] if a.overlaps(b)]


def test_categorical_axes_show_every_choice_by_name(fcn_figures):
    _, figs = fcn_figures
    axes = axes_of(figs["parallel_coordinate"])
    assert tick_texts(axes["optimizer"]) == ["sgd", "momentum", "rmsprop", "adam", "adamw"]
    assert tick_texts(axes["batch_norm"]) == ["false", "true"]
    assert [t.replace("\n", "_") for t in tick_texts(axes["init"])] == [
        "default",
        "xavier_normal",
        "xavier_uniform",
        "kaiming_uniform",
        "kaiming_normal",
    ]


def test_integer_parameters_have_integer_ticks(fcn_figures):
    _, figs = fcn_figures
    axes = axes_of(figs["parallel_coordinate"])
    assert tick_texts(axes["n_layers"]) == ["1", "2", "3"]
    for name in ("width_1", "width_2", "width_3"):  # log-sampled 128..1024: powers of two
        assert tick_texts(axes[name]) == ["128", "256", "512", "1024"]


def test_integers_come_from_the_distributions_not_from_names():
    study = optuna.create_study(direction="maximize")
    study.optimize(
        lambda t: (
            t.suggest_int("units", 10, 200) / 200
            + t.suggest_int("depth", 1, 3)
            + t.suggest_float("depth_f", 1.0, 3.0)
            + t.suggest_int("batch", 128, 512, step=128) / 512
        ),
        n_trials=8,
    )
    fig = parallel_figure.parallel_coordinate(study)
    fig.canvas.draw()
    axes = axes_of(fig)
    assert tick_texts(axes["units"]) and all(t.isdigit() for t in tick_texts(axes["units"]))
    assert tick_texts(axes["depth"]) == ["1", "2", "3"]
    assert "1.5" in tick_texts(axes["depth_f"])  # the same range as a float: not integers
    assert tick_texts(axes["batch"]) == ["128", "256", "384", "512"]  # the values it can take
    plots.close(fig)


def test_log_axes_have_a_few_plain_ticks(fcn_figures):
    _, figs = fcn_figures
    lr = axes_of(figs["parallel_coordinate"])["lr"]
    assert lr.get_yscale() == "log"
    assert tick_texts(lr) == ["1e-4", "0.001", "0.01", "0.1"]
    assert [
        label.get_text()
        for label in lr.yaxis.get_ticklabels(minor=True)
        if label.get_visible() and label.get_text()
    ] == []


def test_a_narrow_log_range_still_gets_several_ticks():
    study = fake_study("search_spaces/cnn.yaml", "fast_cnn", 12)
    fig = parallel_figure.parallel_coordinate(study)
    fig.canvas.draw()
    axes = axes_of(fig)
    assert tick_texts(axes["lr"]) == ["0.03", "0.1", "0.3"]  # 0.02..0.4: 1-3-10 steps
    assert tick_texts(axes["max_shift"]) == ["0", "1", "2"]
    assert tick_texts(axes["batch_size"]) == ["64", "128", "256"]  # categorical numbers
    plots.close(fig)


def test_no_tick_labels_overlap_at_the_logged_size(fcn_figures):
    _, figs = fcn_figures
    fig = figs["parallel_coordinate"]
    width, _ = fig.get_size_inches() * fig.dpi
    assert width <= 1300  # the artifact viewer shrinks it to ~950 px: not much further
    every = []
    for name, ax in axes_of(fig).items():
        own = boxes(drawn(ax.yaxis))
        assert own and not overlapping(own), name
        every += own
    assert not overlapping(every)  # nor with a neighbouring axis's labels
    assert not overlapping(boxes(drawn(fig.axes[0].xaxis)))  # the axis names
    for name in ("optimization_history", "intermediate_values", "param_importances"):
        for ax in figs[name].axes:
            assert not overlapping(boxes(drawn(ax.xaxis))), name
            assert not overlapping(boxes(drawn(ax.yaxis))), name


def test_the_best_trial_is_highlighted(fcn_figures):
    study, figs = fcn_figures
    host = figs["parallel_coordinate"].axes[0]
    red = [
        line
        for line in host.get_lines()
        if matplotlib.colors.same_color(line.get_color(), parallel_figure.BEST["color"])
    ]
    assert len(red) == 1
    assert red[0].get_ydata()[0] == max(line.get_ydata()[0] for line in host.get_lines())
    legend = [t.get_text() for t in host.get_legend().get_texts()]
    assert legend == [f"best: trial {study.best_trial.number}, val_acc {study.best_value:.4f}"]


def test_intermediate_values_are_coloured_by_state_not_listed_by_trial(fcn_figures):
    study, figs = fcn_figures
    ax = figs["intermediate_values"].axes[0]
    pruned = sum(t.state.name == "PRUNED" for t in study.trials)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        f"completed ({len(study.trials) - pruned})",
        f"pruned ({pruned})",
        f"best: trial {study.best_trial.number}",
    ]
    grey = [
        line
        for line in ax.get_lines()
        if matplotlib.colors.same_color(line.get_color(), plots.STATE_COLOURS["PRUNED"])
    ]
    assert len(grey) == pruned


def test_a_single_completed_trial_still_gives_its_figures(capsys):
    study = fake_study("search_spaces/fcn.yaml", "fcn", 1, name="one")
    figs = plots.figures(study)
    assert set(figs) == set(plots.PLOTS)
    epochs = figs["intermediate_values"].axes[0]
    figs["intermediate_values"].canvas.draw()
    assert all(float(t.get_text()).is_integer() for t in epochs.get_xticklabels() if t.get_text())
    for fig in figs.values():
        plots.close(fig)


def test_a_study_without_completed_trials_skips_the_parallel_plot(capsys):
    study = optuna.create_study(direction="maximize")

    def pruned(trial):
        trial.suggest_float("lr", 1e-4, 0.1, log=True)
        trial.report(0.5, 1)
        raise optuna.TrialPruned()

    study.optimize(pruned, n_trials=2)
    figs = plots.figures(study)
    assert "parallel_coordinate" not in figs and "intermediate_values" in figs
    assert "no parallel_coordinate plot" in capsys.readouterr().err
    for fig in figs.values():
        plots.close(fig)
