"""Typed configuration: the choices every entry point shares, and one frozen `TrainConfig`.

Built once at the edge (the CLI, MLproject parameters, a search-space sample) and passed down.
Each field is an option defined once (pipeline/core/options.py): `train`'s command line (with
its `--recipe`: pipeline/core/recipes.py), its MLproject parameters and the parameters its runs
log all come from these definitions.
This module imports nothing heavy, so `--help` and argument errors stay instant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pipeline.core import options

MODELS = ("fcn", "study_cnn", "fast_cnn")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
INITS = (
    "default",
    "normal",
    "xavier_normal",
    "xavier_uniform",
    "kaiming_uniform",
    "kaiming_normal",
)
FCN_ONLY = ("hidden",)  # the CNNs have fixed layers: they ignore these options
MAX_SHIFT = 8  # pixels of the 28: more moves garments out of the image
MAX_CUTOUT = 28  # a square the size of the image blanks it whole
MAX_TTA_SHIFT = 2  # test-time moves beyond a couple of pixels only blur the average
# Far beyond any useful run (the study trains 50); it refuses a typo such as 10**20, which
# overflowed deep inside the learning-rate schedule after the run had started.
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 50_000  # the whole training split: a larger batch is the same full-batch step
# A 784-16384-16384-10 FCN already holds 281M weights (1.1 GB in float32, about 4x that with
# gradients and Adam's state); --hidden 100000000 asked for 313 GB before failing.
MAX_WIDTH = 16_384
# The study's FCNs have 2 hidden layers and our spaces search 1 to 3. A plain stack of linear
# layers (no residual connections) trains worse, not better, well before 8, so more is a typo:
# `depth: [1, 400]` in a space reached the allocator before anything said no.
MAX_DEPTH = 8
# numpy's RandomState (behind Optuna's TPE) takes seeds below 2**32 (tune derives each trial's
# sampler seed from this one and the trial number); torch takes any of these.
MAX_SEED = 2**31 - 1


def data_dir() -> Any:
    """The `--data-dir` option every entry point that reads FashionMNIST has."""
    return options.path("data", "Folder of the IDX files and the tensor cache.", log=False)


def parse_hidden(value: str | list | tuple) -> tuple[int, ...]:
    """'300,200' (or [300, 200]) -> (300, 200); empty or an empty entry is refused."""
    return options.parse_widths(value, "hidden", MAX_WIDTH, MAX_DEPTH)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the study's base FCN (784-300-200-10, SGD 0.02, batch 512)."""

    model: str = options.choice(
        "fcn",
        "fcn, the study's CNN, or our fast CNN (3 conv blocks, flip-averaged at test).",
        MODELS,
    )
    hidden: tuple[int, ...] = options.widths(  # the study's base widths
        (300, 200),
        "FCN hidden sizes, comma-separated (the CNNs ignore it).",
        most=MAX_DEPTH,
        high=MAX_WIDTH,
    )
    optimizer: str = options.choice("sgd", "momentum is SGD with Nesterov 0.9.", OPTIMIZERS)
    lr: float = options.number(0.02, "Learning rate.", low=0, low_open=True)
    epochs: int = options.integer(
        50, "Passes over the 50k training images.", low=1, high=MAX_EPOCHS
    )
    batch_size: int = options.integer(
        512,
        "Training batch size.",
        low=1,  # the study's
        high=MAX_BATCH_SIZE,
    )
    # probability of zeroing a hidden unit; 0 turns dropout off
    dropout: float = options.number(0.0, "Dropout probability.", low=0, high=1, high_open=True)
    # "default" keeps PyTorch's own (Kaiming-uniform with a=sqrt(5)) init
    init: str = options.choice("default", "Weight initialization scheme.", INITS)
    batch_norm: bool = options.switch(False, "Batch norm after each hidden layer.")
    weight_decay: float = options.number(0.0, "L2 penalty.", low=0)
    # "constant" is the study's
    schedule: str = options.choice(
        "constant",
        "Learning rate over time: constant; 1-epoch warm-up then cosine decay; or "
        "one cycle (linear rise over 20% of the steps, then linear fall to 0).",
        SCHEDULES,
    )
    # training loss only; val/test losses stay plain cross-entropy
    label_smoothing: float = options.number(
        0.0, "Label smoothing of the training loss.", low=0, high=1, high_open=True
    )
    augment: bool = options.switch(False, "Random flips and shifts of up to --max-shift pixels.")
    # 0 flips only (measured best for short CNN runs)
    max_shift: int = options.integer(
        2,
        "With --augment true: largest random shift in pixels.",
        low=0,
        high=MAX_SHIFT,
        zero="flips only",
    )
    # A square of background over each training image at a random place (DeVries & Taylor's
    # cutout); its centre can lie anywhere, so near the border only part of it is inside.
    cutout: int = options.integer(
        0,
        "With --augment true: side in pixels of a square blanked out of each training image.",
        low=0,
        high=MAX_CUTOUT,
        zero="none",
    )
    # Evaluation, callbacks and the logged model use the average; training keeps the raw
    # weights. Per step: 0.999 averages over about the last 1000 steps (2.5 epochs at batch 128).
    ema: float = options.number(
        0.0,
        "Decay of an exponential moving average of the weights (and batch-norm statistics), "
        "updated every step; the average is what is evaluated and kept.",
        low=0,
        high=1,
        high_open=True,
        zero="no average",
    )
    # Measured (docs/history.md): 128 lifted fast_cnn's val accuracy by about 0.45 points for
    # 0.56 M more multiply-adds per image (4.84 M in all).
    head_hidden: int = options.integer(
        0,
        "fast_cnn only: width of a hidden layer (linear, batch norm, ReLU) between the conv "
        "features and the 10 logits.",
        low=0,
        high=MAX_WIDTH,
        zero="logits straight from the features",
    )
    # Measured for fast_cnn in docs/history.md, "Whitening the first convolution".
    whiten: bool = options.switch(
        False,
        "CNNs only: initialise the first convolution as whitening filters of the training "
        "images' patches (the eigenvectors of their covariance, and their negatives).",
    )
    tta_shift: int = options.integer(
        0,
        "fast_cnn only: at evaluation also average over the image moved this many pixels "
        "up-left and down-right (3x the evaluation work).",
        low=0,
        high=MAX_TTA_SHIFT,
        zero="flip averaging only",
    )
    # A final model once the options are chosen (as scikit-learn's refit): the tuner selects on
    # the held-out split, so a search space cannot turn this off. Measured for fast_cnn in
    # docs/history.md, "Training on all 60,000 images".
    holdout: bool = options.switch(
        True,
        "Hold out 10,000 of the 60,000 training images as the validation split; false: "
        "train on all 60,000 (a final model once options are chosen; no val metrics).",
    )
    seed: int = options.integer(0, "Seeds weights, dropout and batch order.", low=0, high=MAX_SEED)

    def __post_init__(self):
        options.check(self)

    def to_dict(self) -> dict:
        """Flat, loggable form: `hidden` as '300,200' so MLflow shows it as one readable param."""
        return options.params(self, TrainConfig)

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(TrainConfig))
