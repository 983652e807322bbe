"""The report's figures: each table's curves over seeds, and per-class test accuracy; PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from pipeline.core.data import CLASSES
from pipeline.core.metrics import TRAIN_LOSS, VAL_ACC, VAL_LOSS
from pipeline.replication.experiments import TABLES, VARIANTS, Table
from pipeline.replication.report.inputs import ReportInput, per_class_accuracy

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
PER_CLASS_KEYS = ("sgd_0.02", "adam_8e-5", "cnn")  # base FCN, best FCN of the study, its CNN


def table_figure(input: ReportInput, table: Table) -> Figure:
    """Loss (train dashed, val solid) and val accuracy of every variant on shared axes; the
    line is the mean over seeds, the band its min..max."""
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for color, key in zip(COLORS, table.variants):
        runs = input.runs[key]
        n = min(len(r.history) for r in runs)
        epochs = np.arange(1, n + 1)
        label = f"{VARIANTS[key].label} (n={len(runs)})"
        for ax, name, style, scale, lab in (
            (loss_ax, TRAIN_LOSS, "--", 1, None),
            (loss_ax, VAL_LOSS, "-", 1, label),
            (acc_ax, VAL_ACC, "-", 100, label),
        ):
            values = scale * np.array([[h[name] for h in r.history[:n]] for r in runs])
            ax.plot(
                epochs,
                values.mean(0),
                style,
                color=color,
                label=lab,
                marker="." if n < 15 else None,
            )
            if len(runs) > 1:
                ax.fill_between(
                    epochs, values.min(0), values.max(0), color=color, alpha=0.15, linewidth=0
                )
    loss_ax.set(
        title="Cross-entropy loss (solid: validation, dashed: training)",
        xlabel="epoch",
        ylabel="loss",
    )
    acc_ax.set(
        title="Validation accuracy (mean over seeds; band: min..max)",
        xlabel="epoch",
        ylabel="accuracy (%)",
    )
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        longest = max(len(r.history) for k in table.variants for r in input.runs[k])
        if longest <= 12:
            ax.set_xticks(np.arange(1, longest + 1))
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(
        *acc_ax.get_legend_handles_labels(),
        loc="outside lower center",
        ncols=len(table.variants),
        fontsize=9,
    )
    # Zoom the accuracy axis on the interesting part: above the worst first-epoch mean.
    floor = min(
        100 * np.mean([r.history[0][VAL_ACC] for r in input.runs[k]]) for k in table.variants
    )
    top = max(
        100 * max(h[VAL_ACC] for r in input.runs[k] for h in r.history) for k in table.variants
    )
    acc_ax.set_ylim(max(floor - 1, 0), min(top + 0.7, 100))
    fig.suptitle(f"Table {table.number}: {table.title}")
    return fig


def per_class_figure(input: ReportInput, keys: Sequence[str]) -> Figure:
    """Bars of every class's test accuracy for the variants `keys`, ± std over seeds."""
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(keys)
    x = np.arange(len(CLASSES))
    for i, (key, color) in enumerate(zip(keys, COLORS)):
        mean, std = per_class_accuracy(input, key)
        ax.bar(
            x + (i - (len(keys) - 1) / 2) * width,
            100 * mean,
            width,
            yerr=100 * std,
            color=color,
            label=f"{VARIANTS[key].label} (n={len(input.runs[key])})",
            capsize=2,
        )
    ax.set_xticks(x, CLASSES, rotation=20, ha="right")
    low = min(100 * per_class_accuracy(input, k)[0].min() for k in keys)
    ax.set_ylim(max(low - 8, 0), 100)
    ax.set(
        ylabel="test accuracy of the class (%)",
        xlabel="true class",
        title="Per-class test accuracy (recall), mean over seeds; bars: ± std",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def figures(input: ReportInput) -> dict[str, Figure]:
    """Every figure of the report by its file name under figures/."""
    out = {f"table_{t.number}.png": table_figure(input, t) for t in TABLES}
    out["per_class.png"] = per_class_figure(input, PER_CLASS_KEYS)
    return out


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes, at the resolution the report shows."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
