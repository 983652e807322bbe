"""The study's figures for the parent run: Optuna's own plots where they read well, and our
parallel coordinates where Optuna's do not. `summary.log_study` logs each as a PNG.

Sized for MLflow's artifact viewer, which shows an image about 950 px wide: 10-11 inches at
100 dpi keep 9-point labels readable there.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import optuna
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullLocator
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from pipeline.core.metrics import VAL_ACC

vis = optuna.visualization.matplotlib
ACC = "validation accuracy"
SIZE = (10, 5.2)  # inches; the parallel coordinates widen with their number of axes
MAX_WIDTH = 13.0  # inches: the parallel coordinates' widest
STATE_COLOURS = {"COMPLETE": "tab:blue", "PRUNED": "0.6"}  # any other state: tab:orange
STATE_WORDS = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed"}
BEST = {"color": "tab:red", "linewidth": 2.5, "zorder": 5}


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
        state = states.get(line.get_label(), "")
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
    if ax.get_legend():
        ax.get_legend().remove()
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
        lambda s: parallel_coordinate(s),
        "Parameters of every completed trial, coloured by validation accuracy",
    ),
}


# --- parallel coordinates -------------------------------------------------------------------
# Optuna's version labels only the categories that occur, puts every tick label on the lines
# of the next axis, labels every minor tick of a log axis and cannot be told that a parameter
# is an integer. Ours reads each axis off the study's distributions: categories as names,
# integers as integers, log ranges on log axes with a few plain-number ticks.


def parallel_coordinate(study: optuna.Study) -> Figure:
    """One vertical axis per parameter, in the order the search space samples them (those that
    some trials lack, such as width_3, last), each trial a line coloured by its val_acc on the
    first axis, which is the colour bar; the best trial red."""
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not trials:
        raise ValueError("no completed trial")
    names = list(dict.fromkeys(p for t in trials for p in t.params))  # sampling order
    names.sort(key=lambda p: not all(p in t.params for t in trials))  # stable: always-there first
    values = [t.value for t in trials]
    low, high = _padded(min(values), max(values), log=False)
    norm = matplotlib.colors.Normalize(low, high)
    # good trials dark, poor ones pale but not the yellow end, which vanishes on white
    cmap = matplotlib.colors.ListedColormap(
        matplotlib.colormaps["viridis_r"](np.linspace(0.15, 1, 256))
    )

    # Widest at 13 inches (1300 px): the artifact viewer shrinks anything wider to ~950 px, so
    # many parameters (13 axes for the FCN space) share that width instead.
    width = min(MAX_WIDTH, max(7.0, 1.5 + 0.95 * (len(names) + 1)))
    fig, host = plt.subplots(figsize=(width, SIZE[1]))
    host.set(xlim=(-0.3, len(names) + 0.3), ylim=(0, 1), facecolor="white")
    host.set_xticks(range(len(names) + 1), [VAL_ACC, *names], fontsize=9)
    host.yaxis.set_visible(False)
    host.grid(False)
    for spine in host.spines.values():
        spine.set_visible(False)
    # The colour bar is the first axis: a line starts at its trial's value on it.
    bar = host.inset_axes([-0.06, 0, 0.12, 1], transform=host.transData, label=VAL_ACC)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), cax=bar)
    bar.yaxis.set_ticks_position("left")
    _ticks(bar, FloatDistribution(low, high), low, high)

    heights = [_axis(host, i + 1, name, trials) for i, name in enumerate(names)]
    best = study.best_trial
    for trial in sorted(trials, key=lambda t: t.value):  # the best lines drawn last, on top
        ys = [norm(trial.value)] + [
            height(trial.params.get(name)) for name, height in zip(names, heights)
        ]
        style = (
            BEST
            if trial.number == best.number
            else {"color": cmap(norm(trial.value)), "linewidth": 1.2, "alpha": 0.8}
        )
        host.plot([0.06, *range(1, len(names) + 1)], ys, **style)  # 0.06: the bar's edge
    host.legend(
        [Line2D([], [], **BEST)],
        [f"best: trial {best.number}, val_acc {best.value:.4f}"],
        loc="lower right",
        bbox_to_anchor=(1, 1),
        frameon=False,
        fontsize=9,
    )
    return fig


def _axis(host, x: int, name: str, trials: list) -> Callable[[Any], float]:
    """Draw parameter `name`'s axis at x; return value -> height in the host's 0..1."""
    dist = next(t.distributions[name] for t in reversed(trials) if name in t.params)
    seen = [t.params[name] for t in trials if name in t.params]
    ax = host.twinx()  # shares x: its left spine can stand at x in data units
    ax.set_zorder(host.get_zorder() + 1)  # labels over the lines, not under them
    ax.set_label(name)  # how a test finds it
    ax.grid(False)
    for side in ("top", "bottom", "right"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_position(("data", x))
    ax.yaxis.set_ticks_position("left")
    ax.yaxis.set_label_position("left")
    if isinstance(dist, CategoricalDistribution):
        choices = list(dist.choices) + [v for v in dict.fromkeys(seen) if v not in dist.choices]
        ax.set_ylim(-0.5, len(choices) - 0.5)
        ax.yaxis.set_major_locator(FixedLocator(range(len(choices))))
        ax.yaxis.set_major_formatter(
            FuncFormatter(
                lambda v, _: _category(choices[int(round(v))]) if 0 <= v < len(choices) else ""
            )
        )
        ax.yaxis.set_minor_locator(NullLocator())
        _legible(ax)
        index = {repr(c): i for i, c in enumerate(choices)}
        return lambda v: math.nan if v is None else (index[repr(v)] + 0.5) / len(choices)
    log = dist.log
    low, high = _padded(min(dist.low, *seen), max(dist.high, *seen), log)
    ax.set_yscale("log" if log else "linear")
    ax.set_ylim(low, high)
    _ticks(ax, dist, low, high)
    t = math.log10 if log else float
    return lambda v: math.nan if v is None else (t(v) - t(low)) / (t(high) - t(low))


def _ticks(ax, dist, low: float, high: float) -> None:
    """A handful of ticks a reader can say out loud: every value of a small integer range,
    powers of two for log-sampled integers (widths), 1-3-10 or 1-2-5 steps on log ranges."""
    axis = ax.yaxis
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    is_int = isinstance(dist, IntDistribution)
    if is_int and dist.log:
        axis.set_major_locator(LogLocator(base=2, numticks=7))
    elif is_int and (dist.high - dist.low) / dist.step <= 8:  # n_layers, max_shift
        axis.set_major_locator(FixedLocator(range(dist.low, dist.high + 1, dist.step)))
    elif is_int:
        axis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    elif dist.log:
        decades = math.log10(high / low)
        subs = (1.0,) if decades > 3 else (1.0, 3.0) if decades > 1 else (1.0, 2.0, 5.0)
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=7))
    else:
        axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _number(v)))
    _legible(ax)


def _legible(ax) -> None:
    """Lines cross every axis: labels on a white ground, over the lines."""
    ax.tick_params(axis="y", labelsize=8.5)
    for label in ax.yaxis.get_ticklabels():
        label.set_bbox({"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1})


def _padded(low: float, high: float, log: bool) -> tuple[float, float]:
    """The range widened by 4% each side (so end values do not sit on the frame), or, for a
    single value, by a fixed amount."""
    t, inv = (math.log10, lambda v: 10**v) if log else (float, float)
    a, b = t(low), t(high)
    pad = (b - a) * 0.04 if b > a else (0.3 if log else max(abs(a) * 0.01, 0.01))
    return inv(a - pad), inv(b + pad)


def _number(v: float) -> str:
    """0.001, 0.03, 64, 3e-4: plain down to 0.001, short exponents below; never 10^-3 or
    1.00e-03."""
    if v == 0 or abs(v) >= 1e-3:
        return f"{v:.6g}"
    mantissa, exponent = f"{v:.6e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def _category(value) -> str:
    """true/false as in the search-space files; long names over two lines (kaiming / uniform),
    so they fit between two axes."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if len(text) > 9 and "_" in text:
        text = text.replace("_", "\n", 1)
    return text


def _best(study: optuna.Study):
    try:
        return study.best_trial
    except ValueError:  # no completed trial
        return None
