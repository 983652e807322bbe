"""Numbers from numbers: confusion counts, per-class scores, spread over seeds, Welch's t-test,
time-to-accuracy.

sklearn.metrics gives the confusion counts and per-class scores, scipy.stats the t-test:
training runs, `evaluate` and the replication report all use them, and the tests need no model,
no data and no tracking store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from pipeline.core.metrics import EPOCH_TIME, VAL_ACC

ALPHA = 0.05  # significance level: a difference with p >= ALPHA is inside the noise


def class_scores(
    true: np.ndarray, predicted: np.ndarray, n_classes: int, weight: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Precision, recall (= per-class accuracy), F1 and support of every class 0..n_classes-1
    from true and predicted labels (`weight`: how many samples each pair stands for). A class
    never predicted has precision 0, one never seen recall 0."""
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=np.arange(n_classes), sample_weight=weight, zero_division=0
    )
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": np.asarray(support, dtype=np.int64),
    }


def confusion_counts(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """The confusion matrix of classes 0..n_classes-1: rows true classes, columns predicted
    ones (what `per_class` reads)."""
    return confusion_matrix(true, predicted, labels=np.arange(n_classes))


def per_class(counts: np.ndarray) -> dict[str, np.ndarray]:
    """`class_scores` from a confusion matrix whose rows are true classes and columns predicted
    ones (results.json keeps only these counts): each cell is one (true, predicted) pair
    weighted by its count."""
    counts = np.asarray(counts)
    k = counts.shape[0]
    true, predicted = np.divmod(np.arange(k * k), k)
    return class_scores(true, predicted, k, weight=counts.ravel())


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (0 for one value), min and max of one figure over seeds."""

    mean: float
    std: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            raise ValueError("no values")
        std = float(v.std(ddof=1)) if v.size > 1 else 0.0
        return cls(float(v.mean()), std, float(v.min()), float(v.max()), int(v.size))


@dataclass(frozen=True)
class Comparison:
    """Welch's two-sided t-test of mean(a) - mean(b)."""

    diff: float
    t: float
    df: float
    p: float

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p < alpha


def welch(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's unequal-variance t-test (scipy.stats.ttest_ind, equal_var=False). With two
    constant samples scipy has no t (0 / 0); we say p is 1 when they are equal and 0 when
    they differ (no noise at all)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        raise ValueError("Welch's t-test needs at least two values per group")
    diff = float(x.mean() - y.mean())
    if x.var() == 0 and y.var() == 0:
        return Comparison(diff, math.inf if diff else 0.0, math.inf, 0.0 if diff else 1.0)
    result = scipy_stats.ttest_ind(x, y, equal_var=False)
    return Comparison(diff, float(result.statistic), float(result.df), float(result.pvalue))


def time_to_accuracy(
    history: Sequence[dict[str, float]],
    threshold: float,
    metric: str = VAL_ACC,
    clock: str = EPOCH_TIME,
) -> float | None:
    """Wall seconds (summed per-epoch times, evaluation included) until `metric` first reaches
    `threshold`; None when it never does."""
    elapsed = 0.0
    for epoch in history:
        elapsed += epoch[clock]
        if epoch[metric] >= threshold:
            return elapsed
    return None
