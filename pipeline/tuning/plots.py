"""Optuna's own plots of a study, as matplotlib figures titled and labelled for a reader."""

from __future__ import annotations

import sys
import warnings

import matplotlib
import optuna
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

vis = optuna.visualization.matplotlib
ACC = "validation accuracy"
INTEGER_PARAMS = {"n_layers", "epochs", "batch_size"}


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
    # Optuna switches pyplot to its "ggplot" style globally: keep that inside its own plots, not
    # in the curves and confusion matrices drawn after them in the same process.
    with warnings.catch_warnings(), matplotlib.rc_context():
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
            fig = ax.figure
            for each in fig.axes:  # Optuna's generic titles; the figure title says what to read
                for loc in ("left", "center", "right"):
                    each.set_title("", loc=loc)
            _tidy_legend(ax)
            if name == "parallel_coordinate":
                _readable_ticks(fig)
            fig.set_size_inches(15 if name == "parallel_coordinate" else 13, 6.5)
            fig.suptitle(f"Study {study.study_name}: {title}")
            fig.tight_layout()
            out[name] = fig
    return out


def _tidy_legend(ax) -> None:
    """Legends in words: "trial 3" not "Trial3", "best so far" not "Best Value"; none for a
    single series that the axis label already names."""
    legend = ax.get_legend()
    if legend is None:
        return
    texts = legend.get_texts()
    if len(texts) == 1:
        legend.remove()
        return
    for text in texts:
        label = text.get_text()
        if label == "Best Value":
            text.set_text("best so far")
        elif label.startswith("Trial") and label[5:].isdigit():
            text.set_text(f"trial {label[5:]}")


def _readable_ticks(fig: Figure) -> None:
    """Parallel coordinates write each axis's ticks over the lines of the next one: give the
    labels a background, so a value can be read where lines cross it. Counts get integer
    ticks, log axes plain numbers (0.002, 64) instead of 2x10^-3."""
    main, *others = fig.axes
    twins = [ax for ax in others if ax.get_label() != "<colorbar>"]  # one per parameter
    names = [t.get_text() for t in main.get_xticklabels()][1:]  # the first axis is the value
    for name, ax in zip(names, twins):
        if ax.get_yscale() == "log":
            for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis(FuncFormatter(lambda v, _: f"{v:g}"))
        elif name in INTEGER_PARAMS:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in fig.axes:
        for label in ax.get_yticklabels() + ax.get_yticklabels(minor=True):
            label.set_fontsize(9)
            label.set_bbox({"facecolor": "white", "edgecolor": "none", "alpha": 0.85,
                            "pad": 1})


def close(fig: Figure) -> None:
    """Optuna draws through pyplot: release the figure, or a long study piles them up."""
    import matplotlib.pyplot as plt

    plt.close(fig)
