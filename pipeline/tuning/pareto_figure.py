"""The accuracy-vs-time Pareto front of a frontier study as one matplotlib figure.

Optuna's `plot_pareto_front` colours points by trial number and cannot tell model families
apart, which is the figure's whole point; so we draw it: training time on a log axis (an FCN
epoch costs about a second on our CPU, a CNN epoch 20-50), each family its colour and marker,
the front's trials filled and joined by the staircase of the best accuracy within each time
budget, the other trials hollow.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from pipeline.core.metrics import TRAIN_TIME, VAL_ACC
from pipeline.core.words import MODEL_LABELS

STYLE = {"fcn": ("tab:blue", "o"), "fast_cnn": ("tab:orange", "s"), "study_cnn": ("tab:green", "^")}
OTHER = ("tab:gray", "D")


def figure(rows: list[dict], study_name: str) -> Figure:
    """`rows`: tuning/pareto.py's `trials` (model, epochs, val_acc, train_time_s,
    on_front), fastest first. About 1000 x 600 px at the 100 dpi MLflow shows."""
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax = fig.subplots()
    front = [r for r in rows if r["on_front"]]
    # the staircase: at each time budget, the best accuracy that fits in it
    xs = [r[TRAIN_TIME] for r in front] + [max(r[TRAIN_TIME] for r in rows) * 1.15]
    ys = [100 * r[VAL_ACC] for r in front]
    ax.step(
        xs,
        ys + ys[-1:],
        where="post",
        color="black",
        lw=1,
        alpha=0.6,
        zorder=1,
        label="best within the time budget (the front)",
    )
    present = {r["model"] for r in rows}
    models = [m for m in STYLE if m in present] + sorted(present - set(STYLE))
    for model in models:
        color, marker = STYLE.get(model, OTHER)
        for on_front in (True, False):
            mine = [r for r in rows if r["model"] == model and r["on_front"] == on_front]
            if mine:
                ax.scatter(
                    [r[TRAIN_TIME] for r in mine],
                    [100 * r[VAL_ACC] for r in mine],
                    s=80 if on_front else 45,
                    marker=marker,
                    zorder=3,
                    facecolors=color if on_front else "none",
                    edgecolors=color,
                    linewidths=1.5,
                    alpha=1 if on_front else 0.7,
                )
    for r in front:
        ax.annotate(
            f"{r['epochs']} ep",
            (r[TRAIN_TIME], 100 * r[VAL_ACC]),
            fontsize=9,
            xytext=(6, -12),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "25" else ""))
    ax.set_xlabel("training time (s), log scale")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    families = [
        Line2D(
            [],
            [],
            ls="",
            marker=STYLE.get(m, OTHER)[1],
            color=STYLE.get(m, OTHER)[0],
            markersize=8,
            label=MODEL_LABELS.get(m, "other"),
        )
        for m in models
    ]
    hollow = Line2D(
        [],
        [],
        ls="",
        marker="o",
        markerfacecolor="none",
        color="gray",
        label="dominated: another trial is faster and as accurate",
    )
    ax.legend(handles=[*families, ax.get_lines()[0], hollow], loc="lower right", fontsize=9)
    fig.suptitle(
        f"Study {study_name}: validation accuracy vs training time, {len(rows)} "
        f"trials, {len(front)} on the Pareto front (filled; labels: epochs)"
    )
    return fig
