"""Our parallel coordinates of a study's completed trials, one of the study's figures
(tuning/study_figures.py). Optuna's version labels only the categories that occur, puts every
tick label on the lines of the next axis, labels every minor tick of a log axis and cannot be
told that a parameter is an integer. Ours reads each axis off the study's distributions:
categories as names, integers as integers, log ranges on log axes with a few plain-number ticks.
"""

from __future__ import annotations

import math
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
from pipeline.tuning.attrs import completed_value

HEIGHT = 5.2  # inches, as the study's other figures
MAX_WIDTH = 13.0  # inches: the widest, however many parameters
BEST: dict[str, Any] = {"color": "tab:red", "linewidth": 2.5, "zorder": 5}  # the best trial's line


def parallel_coordinate(study: optuna.Study) -> Figure:
    """One vertical axis per parameter, in the order the search space samples them (those that
    some trials lack, such as width_3, last), each trial a line coloured by its val_acc on the
    first axis, which is the colour bar; the best trial red."""
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not trials:
        raise ValueError("no completed trial")
    names = list(dict.fromkeys(p for t in trials for p in t.params))  # sampling order
    names.sort(key=lambda p: not all(p in t.params for t in trials))  # stable: always-there first
    values = [completed_value(t) for t in trials]
    low, high = _padded(min(values), max(values), log=False)
    norm = matplotlib.colors.Normalize(low, high)
    # good trials dark, poor ones pale but not the yellow end, which vanishes on white
    cmap = matplotlib.colors.ListedColormap(
        matplotlib.colormaps["viridis_r"](np.linspace(0.15, 1, 256))
    )

    # Widest at 13 inches (1300 px): the artifact viewer shrinks anything wider to ~950 px, so
    # many parameters (13 axes for the FCN space) share that width instead.
    width = min(MAX_WIDTH, max(7.0, 1.5 + 0.95 * (len(names) + 1)))
    fig, host = plt.subplots(figsize=(width, HEIGHT))
    host.set(xlim=(-0.3, len(names) + 0.3), ylim=(0, 1), facecolor="white")
    host.set_xticks(range(len(names) + 1), [VAL_ACC, *names], fontsize=9)
    host.yaxis.set_visible(False)
    host.grid(False)
    for spine in host.spines.values():
        spine.set_visible(False)
    # The colour bar is the first axis: a line starts at its trial's value on it.
    bar = host.inset_axes((-0.06, 0, 0.12, 1), transform=host.transData, label=VAL_ACC)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), cax=bar)
    bar.yaxis.set_ticks_position("left")
    _ticks(bar, FloatDistribution(low, high), low, high)

    heights = [_axis(host, i + 1, name, trials) for i, name in enumerate(names)]
    best = study.best_trial
    for trial in sorted(trials, key=completed_value):  # the best lines drawn last, on top
        ys = [norm(completed_value(trial))] + [
            height(trial.params.get(name)) for name, height in zip(names, heights)
        ]
        style = (
            BEST
            if trial.number == best.number
            else {"color": cmap(norm(completed_value(trial))), "linewidth": 1.2, "alpha": 0.8}
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
