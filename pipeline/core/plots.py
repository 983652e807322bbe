"""Figures a person reads: learning curves, confusion matrices, sample grids.

Each function returns a matplotlib `Figure` (no pyplot state, so nothing leaks between runs);
callers save it to a file or log it to MLflow.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from pipeline.core import files
from pipeline.core.data import CLASSES
from pipeline.core.errors import UserError
from pipeline.core.metrics import TEST_ACC, VAL_ACC

SPLIT_STYLE = {"train": ("tab:blue", "-"), "val": ("tab:orange", "-"), "test": ("tab:green", "--")}
# The train numbers are running means while the weights change (and dropout is on), so they can
# sit below val early on: the legend says so instead of leaving the reader to wonder.
SPLIT_LABEL = {
    "train": "train (mean during the epoch)",
    "val": "val (after the epoch)",
    "test": "test (after the epoch)",
}


def curves(history: Sequence[dict[str, float]], title: str) -> Figure:
    """Loss and accuracy against epochs for train, val (when held out) and test, as in the
    study's figures."""
    epochs = np.arange(1, len(history) + 1)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for split, (color, style) in SPLIT_STYLE.items():
        if f"{split}_acc" not in history[0]:  # trained on all 60,000: no val split
            continue
        label = SPLIT_LABEL.get(split, split)
        loss_ax.plot(
            epochs,
            [h[f"{split}_loss"] for h in history],
            style,
            color=color,
            label=label,
            marker="." if len(epochs) < 30 else None,
        )
        acc_ax.plot(
            epochs,
            [100 * h[f"{split}_acc"] for h in history],
            style,
            color=color,
            label=label,
            marker="." if len(epochs) < 30 else None,
        )
    final = history[-1]
    loss_ax.set(title="Cross-entropy loss", xlabel="epoch", ylabel="loss")
    val = f"val {100 * final[VAL_ACC]:.2f}%, " if VAL_ACC in final else ""
    acc_ax.set(
        title=f"Accuracy (final: {val}test {100 * final[TEST_ACC]:.2f}%)",
        xlabel="epoch",
        ylabel="accuracy (%)",
    )
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    return fig


def confusion(counts: np.ndarray, title: str) -> Figure:
    """Test-set confusion matrix: counts on the left, rows normalized to recall on the right."""
    counts = np.asarray(counts)
    recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(17, 7.5), layout="constrained")
    for ax, values, fmt, name in zip(
        fig.subplots(1, 2),
        (counts, recall),
        ("{:d}", "{:.2f}"),
        ("counts", "row-normalized (recall per true class)"),
    ):
        ax.imshow(values / max(values.max(), 1e-9), cmap="Blues", vmin=0, vmax=1)
        ticks = np.arange(len(CLASSES))
        ax.set_xticks(ticks, CLASSES, rotation=40, ha="right")
        ax.set_yticks(ticks, CLASSES)
        ax.set(xlabel="predicted class", ylabel="true class", title=name)
        for i in ticks:
            for j in ticks:
                v = values[i, j]
                ax.text(
                    j,
                    i,
                    fmt.format(int(v) if fmt == "{:d}" else v),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if v / max(values.max(), 1e-9) > 0.55 else "black",
                )
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    fig.suptitle(f"{title} (test accuracy {100 * accuracy:.2f}%, {counts.sum()} images)")
    return fig


def sample_grid(images: np.ndarray, labels: np.ndarray, title: str, ncols: int = 8) -> Figure:
    """Images (N, 28, 28) uint8 in a grid, each captioned with its class name."""
    nrows = int(np.ceil(len(images) / ncols))
    fig = Figure(figsize=(1.45 * ncols, 1.6 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, label in zip(axes, images, labels):
        ax.imshow(image.reshape(28, 28), cmap="gray", vmin=0, vmax=255)
        ax.set_title(CLASSES[int(label)], fontsize=8)
    fig.suptitle(title)
    return fig


def save_sample_grids(
    train_images, train_labels, out_dir: Path, batch_size: int = 512, seed: int = 0
) -> list[Path]:
    """The study's two sample figures, from the training order of `seed`:
    the first image of each of the first 16 batches, and the first 64 images of the first batch.
    """
    order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(seed))
    firsts = order[: 16 * batch_size : batch_size]
    figures = {
        "first_of_16_batches.png": sample_grid(
            train_images[firsts].numpy(),
            train_labels[firsts].numpy(),
            f"First image of each of the first 16 training batches (batch {batch_size})",
            4,
        ),
        "first_batch_64.png": sample_grid(
            train_images[order[:64]].numpy(),
            train_labels[order[:64]].numpy(),
            "64 images of the first training batch",
        ),
    }
    blocked = files.not_a_folder(out_dir)
    if blocked:
        raise UserError(f"{out_dir}: {blocked}; move it away to have the sample grids there")
    try:
        with files.new_folders(out_dir):
            for name, fig in figures.items():
                png = io.BytesIO()
                fig.savefig(png, format="png", dpi=110)
                files.write_atomic(out_dir / name, png.getbuffer())
    except OSError as e:  # a full disk, a read-only folder
        raise UserError(f"{out_dir}: cannot write the sample grids: {files.advice(e)}") from None
    return [out_dir / name for name in figures]


def misclassified(
    images: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    confidence: np.ndarray,
    title: str,
    ncols: int = 8,
) -> Figure:
    """Wrongly classified images (N, 28, 28), each captioned with its true and predicted class
    and the model's probability for the wrong class."""
    nrows = max(int(np.ceil(len(images) / ncols)), 1)
    fig = Figure(figsize=(1.75 * ncols, 1.95 * nrows + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, t, p, c in zip(axes, images, true, pred, confidence):
        ax.imshow(image.reshape(28, 28), cmap="gray", vmin=0, vmax=255)
        ax.set_title(
            f"true: {CLASSES[int(t)]}\npred: {CLASSES[int(p)]} {100 * c:.0f}%", fontsize=7.5
        )
    fig.suptitle(title)
    return fig
