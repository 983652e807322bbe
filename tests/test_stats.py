"""Confusion counts, per-class scores, spread, Welch's t-test and time-to-accuracy on numbers
checked by hand."""

import math

import numpy as np
import pytest

from pipeline.core import stats


def test_per_class_scores_from_a_confusion_matrix():
    counts = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])  # class 2: never seen, never predicted
    s = stats.per_class(counts)
    assert s["recall"] == pytest.approx([0.8, 0.9, 0.0])
    assert s["precision"] == pytest.approx([8 / 9, 9 / 11, 0.0])
    assert s["f1"][0] == pytest.approx(2 * 0.8 * (8 / 9) / (0.8 + 8 / 9))
    assert list(s["support"]) == [10, 10, 0]


def test_confusion_counts_put_true_classes_in_rows():
    # class 3: never seen, never predicted; its row and column still there, empty
    counts = stats.confusion_counts(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 0, 2]), 4)
    assert counts.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]


def test_per_class_from_counts_equals_per_class_from_labels():
    rng = np.random.default_rng(0)
    true, predicted = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    counts = np.zeros((4, 4), dtype=np.int64)
    np.add.at(counts, (true, predicted), 1)
    from_counts, from_labels = stats.per_class(counts), stats.class_scores(true, predicted, 4)
    for name in ("precision", "recall", "f1", "support"):
        assert from_counts[name] == pytest.approx(from_labels[name])


def test_spread():
    s = stats.Spread.of([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.min, s.max, s.n) == (2.0, 1.0, 1.0, 3.0, 3)
    assert stats.Spread.of([5.0]).std == 0.0


def samples_with(t: float, df: int) -> tuple[np.ndarray, np.ndarray]:
    """Two samples whose Welch statistic is exactly `t` with `df` degrees of freedom: `df + 1`
    values of sample std 1 against a constant pair (which adds no variance, so df = n - 1)."""
    n = df + 1
    z = np.arange(n, dtype=np.float64)
    z = (z - z.mean()) / z.std(ddof=1)
    return z + t / math.sqrt(n), np.zeros(2)


@pytest.mark.parametrize(
    "t, df, p",
    [
        (12.706, 1, 0.05),
        (2.776, 4, 0.05),
        (2.228, 10, 0.05),
        (2.0, 10, 0.0734),
        (0.0, 5, 1.0),
        (1.96, 10**6, 0.05),
    ],
)
def test_welch_p_matches_the_printed_t_tables(t, df, p):
    a, b = samples_with(t, df)
    c = stats.welch(a, b)
    assert (c.t, c.df) == (pytest.approx(t), pytest.approx(df))
    assert c.p == pytest.approx(p, abs=2e-4)
    assert stats.welch(b, a).p == pytest.approx(p, abs=2e-4)


def test_welch_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0, 8.0, 10.0]
    c = stats.welch(a, b)
    # diff -3, variances 2.5/5 and 10/5: se = sqrt(2.5), t = -1.8974, df = 5.882 (Satterthwaite)
    assert c.diff == -3.0
    assert c.t == pytest.approx(-3 / math.sqrt(2.5))
    assert c.df == pytest.approx(2.5**2 / (0.25 / 4 + 4 / 4))
    assert c.p == pytest.approx(0.1073, abs=5e-4)
    assert not c.significant()
    assert stats.welch([1, 1.1, 0.9], [5, 5.1, 4.9]).significant()


def test_welch_edge_cases():
    assert stats.welch([1.0, 1.0], [1.0, 1.0]).p == 1.0
    assert stats.welch([1.0, 1.0], [2.0, 2.0]).p == 0.0
    with pytest.raises(ValueError):
        stats.welch([1.0], [1.0, 2.0])


def test_time_to_accuracy_sums_epoch_times_until_the_first_epoch_at_the_mark():
    history = [
        {"val_acc": 0.80, "epoch_time_s": 2.0},
        {"val_acc": 0.86, "epoch_time_s": 3.0},
        {"val_acc": 0.84, "epoch_time_s": 1.0},
        {"val_acc": 0.89, "epoch_time_s": 1.0},
    ]
    assert stats.time_to_accuracy(history, 0.85) == 5.0
    assert stats.time_to_accuracy(history, 0.88) == 7.0
    assert stats.time_to_accuracy(history, 0.95) is None
