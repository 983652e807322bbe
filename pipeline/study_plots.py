"""Optuna's own plots of a study, as matplotlib figures titled for a person reading them."""

from __future__ import annotations

import warnings

import optuna
from matplotlib.figure import Figure

# name -> (Optuna's matplotlib plot, a title that says what to look for)
PLOTS = {
    "optimization_history": (optuna.visualization.matplotlib.plot_optimization_history,
                             "Validation accuracy of each trial, and the best so far"),
    "param_importances": (optuna.visualization.matplotlib.plot_param_importances,
                          "Which parameters mattered for validation accuracy (fANOVA)"),
    "intermediate_values": (optuna.visualization.matplotlib.plot_intermediate_values,
                            "Validation accuracy per epoch of every trial (pruned ones stop early)"),
    "parallel_coordinate": (optuna.visualization.matplotlib.plot_parallel_coordinate,
                            "Parameters of every completed trial, coloured by validation accuracy"),
}


def figures(study: optuna.Study) -> dict[str, Figure]:
    """The plots that the study can draw (importances need two completed trials, for one)."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        for name, (plot, title) in PLOTS.items():
            try:
                ax = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # e.g. importances of a study with fewer than two completed trials
            axes = ax.flat[0] if hasattr(ax, "flat") else ax
            fig = axes.figure
            fig.set_size_inches(11, 6)
            fig.suptitle(f"{study.study_name}: {title}")
            out[name] = fig
    return out


def close(fig: Figure) -> None:
    """Optuna draws through pyplot: release the figure, or a long study piles them up."""
    import matplotlib.pyplot as plt

    plt.close(fig)
