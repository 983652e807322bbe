"""Words for people: counts that read right, the networks' names in figures and tables."""

MODEL_LABELS = {"fcn": "FCN", "fast_cnn": "fast CNN", "study_cnn": "study CNN"}


def plural(n: int, word: str) -> str:
    """'1 epoch', '2 epochs'."""
    return f"{n} {word}{'' if n == 1 else 's'}"
