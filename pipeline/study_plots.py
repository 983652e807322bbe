"""Optuna's own plots of a study, as matplotlib figures titled and labelled for a reader."""

from __future__ import annotations

import sys
import warnings

import optuna
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

vis = optuna.visualization.matplotlib
ACC = "validation accuracy"


def _parallel(study: optuna.Study):
    # Conditional widths (width_2, width_3 exist only for deeper nets) turn the plot into a
    # thicket of "None" ticks: keep the first width, drop the rest.
    names = sorted({p for t in study.trials for p in t.params})
    keep = [p for p in names if not (p.startswith("width_") and p != "width_1")]
    return vis.plot_parallel_coordinate(study, params=keep, target_name=ACC)


# name -> (draw, title, x label, y label); None keeps Optuna's label
PLOTS = {
    "optimization_history": (lambda s: vis.plot_optimization_history(s, target_name=ACC),
                             "Validation accuracy of each trial, and the best so far",
                             "trial", ACC),
    "param_importances": (lambda s: vis.plot_param_importances(s, target_name=ACC),
                          "Which parameters mattered for validation accuracy (fANOVA)",
                          None, None),
    "intermediate_values": (vis.plot_intermediate_values,
                            "Validation accuracy per epoch of every trial (pruned ones stop "
                            "early)", "epoch", ACC),
    "parallel_coordinate": (_parallel,
                            "Parameters of every completed trial, coloured by validation "
                            "accuracy", None, None),
}


def figures(study: optuna.Study) -> dict[str, Figure]:
    """The plots that the study can draw (importances need two completed trials, for one)."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        for name, (draw, title, xlabel, ylabel) in PLOTS.items():
            try:
                ax = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                # e.g. importances of a study with fewer than two completed trials
                print(f"note: no {name} plot ({type(e).__name__}: {e})", file=sys.stderr)
                continue
            ax = ax.flat[0] if hasattr(ax, "flat") else ax
            if xlabel:  # trials and epochs are counted: integer ticks only
                ax.set_xlabel(xlabel)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ylabel:
                ax.set_ylabel(ylabel)
            ax.set_title("")  # Optuna's generic title; the figure title says what to read
            fig = ax.figure
            fig.set_size_inches(13, 6.5)
            fig.suptitle(f"Study {study.study_name}: {title}")
            fig.tight_layout()
            out[name] = fig
    return out


def close(fig: Figure) -> None:
    """Optuna draws through pyplot: release the figure, or a long study piles them up."""
    import matplotlib.pyplot as plt

    plt.close(fig)
