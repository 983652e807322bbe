"""Words for people: counts that read right, the networks' names and a training's title in
figures and tables."""

from __future__ import annotations

from pipeline.core.config import TrainConfig

MODEL_LABELS = {"fcn": "FCN", "fast_cnn": "fast CNN", "study_cnn": "study CNN"}


def plural(n: int, word: str) -> str:
    """'1 epoch', '2 epochs'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def describe(config: TrainConfig) -> str:
    """A short human title for figures: model, widths, optimizer and lr."""
    arch = (
        f"FCN {'-'.join(map(str, (784, *config.hidden, 10)))}"
        if config.model == "fcn"
        else MODEL_LABELS[config.model]
    )
    extras = [f"dropout {config.dropout:g}"] if config.dropout else []
    extras += ["batch norm"] if config.batch_norm else []
    extras += [f"init {config.init}"] if config.init != "default" else []
    extras += [f"{config.schedule} schedule"] if config.schedule != "constant" else []
    extras += [f"label smoothing {config.label_smoothing:g}"] if config.label_smoothing else []
    extras += (
        [f"flips + shifts of {config.max_shift}" if config.max_shift else "flips"]
        if config.augment
        else []
    )
    extras += [] if config.holdout else ["all 60,000 training images"]
    return ", ".join([f"{arch}: {config.optimizer} lr {config.lr:g}", *extras])
