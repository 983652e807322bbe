"""The study's figures for the parent run: Optuna's own plots where they read well, and our
parallel coordinates (tuning/parallel_figure.py) where Optuna's do not. `summary.log_study`
logs each as a PNG.

Sized for MLflow's artifact viewer, which shows an image about 950 px wide: 10-11 inches at
100 dpi keep 9-point labels readable there.
"""

from __future__ import annotations

import sys
import warnings

import matplotlib
import matplotlib.pyplot as plt
import optuna
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from pipeline.tuning.parallel_figure import BEST, HEIGHT, parallel_coordinate

vis = optuna.visualization.matplotlib
ACC = "validation accuracy"
SIZE = (10, HEIGHT)  # inches; the parallel coordinates widen with their number of axes
STATE_COLOURS = {"COMPLETE": "tab:blue", "PRUNED": "0.6"}  # any other state: tab:orange
STATE_WORDS = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed"}


def figures(study: optuna.Study) -> dict[str, Figure]:
    """The plots that the study can draw (importances need two completed trials, for one)."""
    out = {}
    # Optuna switches pyplot to its "ggplot" style globally: keep that inside its own plots, not
    # in the curves and confusion matrices drawn after them in the same process.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        for name, (draw, title) in PLOTS.items():
            try:
                fig = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                # e.g. importances of a study with fewer than two completed trials
                print(f"note: no {name} plot ({type(e).__name__}: {e})", file=sys.stderr)
                continue
            fig.suptitle(f"Study {study.study_name}: {title}")
            fig.tight_layout()
            out[name] = fig
    return out


def close(fig: Figure) -> None:
    """Optuna draws through pyplot: release the figure, or a long study piles them up."""
    plt.close(fig)


# --- Optuna's plots, relabelled -------------------------------------------------------------


def _optuna(ax, xlabel: str | None = None, ylabel: str | None = None) -> Figure:
    """Optuna's generic titles off (the figure title says what to read), our axis labels on,
    no legend for a single series that the axis label already names."""
    ax = ax.flat[0] if hasattr(ax, "flat") else ax
    legend = ax.get_legend()
    if legend is not None and len(legend.get_texts()) == 1:
        legend.remove()
    if xlabel:  # trials and epochs are counted: integer ticks only, even for one epoch
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if ylabel:
        ax.set_ylabel(ylabel)
    for each in ax.figure.axes:
        for loc in ("left", "center", "right"):
            each.set_title("", loc=loc)
    ax.figure.set_size_inches(*SIZE)
    return ax.figure


def _history(study: optuna.Study) -> Figure:
    fig = _optuna(vis.plot_optimization_history(study, target_name=ACC), "trial", ACC)
    legend = fig.axes[0].get_legend()
    if legend is not None:  # inside, lower right, where a rising history leaves room
        legend.set_bbox_to_anchor(None)
        legend.set_loc("lower right")
        for text in legend.get_texts():
            if text.get_text() == "Best Value":
                text.set_text("best so far")
    return fig


def _intermediate(study: optuna.Study) -> Figure:
    """Optuna draws one colour and one legend entry per trial: forty trials make a legend
    taller than the figure. Colour by state instead (pruned ones grey), the best trial red."""
    fig = _optuna(vis.plot_intermediate_values(study), "epoch", ACC)
    ax = fig.axes[0]
    states = {f"Trial{t.number}": t.state.name for t in study.trials}
    best = _best(study)
    counts: dict[str, int] = {}
    for line in ax.get_lines():
        state = states.get(str(line.get_label()), "")
        counts[state] = counts.get(state, 0) + 1
        if best is not None and line.get_label() == f"Trial{best.number}":
            line.set(**BEST, alpha=1)
        else:
            line.set(
                color=STATE_COLOURS.get(state, "tab:orange"),
                linewidth=1,
                alpha=0.6 if state == "COMPLETE" else 0.4,
            )
    handles = [
        Line2D(
            [],
            [],
            color=STATE_COLOURS.get(s, "tab:orange"),
            label=f"{STATE_WORDS.get(s, s.lower())} ({n})",
        )
        for s, n in sorted(counts.items())
    ]
    if best is not None:
        handles.append(Line2D([], [], **BEST, label=f"best: trial {best.number}"))
    if legend := ax.get_legend():
        legend.remove()
    ax.legend(handles=handles, loc="lower right")
    return fig


PLOTS = {  # name -> (draw, figure title)
    "optimization_history": (_history, "Validation accuracy of each trial, and the best so far"),
    "param_importances": (
        lambda s: _optuna(vis.plot_param_importances(s, target_name=ACC)),
        "Which parameters mattered for validation accuracy (fANOVA)",
    ),
    "intermediate_values": (
        _intermediate,
        "Validation accuracy per epoch of every trial (pruned ones stop early)",
    ),
    "parallel_coordinate": (
        parallel_coordinate,
        "Parameters of every completed trial, coloured by validation accuracy",
    ),
}


def _best(study: optuna.Study):
    try:
        return study.best_trial
    except ValueError:  # no completed trial
        return None
