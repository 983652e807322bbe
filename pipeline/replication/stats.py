"""Numbers from numbers: per-class scores, spread over seeds, Welch's t-test, time-to-accuracy.

Pure numpy and the standard library: `evaluate` and the replication report both use it, and its
tests need no model, no data and no tracking store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def per_class(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall (= per-class accuracy), F1 and support from a confusion matrix whose
    rows are true classes and columns predicted ones. A class never predicted has precision 0."""
    counts = np.asarray(counts, dtype=np.float64)
    hits = np.diag(counts)
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


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

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p < alpha


def welch(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's unequal-variance t-test. With two identical constant samples p is 1; with
    constant but different samples (no noise at all) p is 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        raise ValueError("Welch's t-test needs at least two values per group")
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se2 = va + vb
    if se2 == 0:
        return Comparison(diff, math.inf if diff else 0.0, math.inf, 0.0 if diff else 1.0)
    t = diff / math.sqrt(se2)
    df = se2 ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    return Comparison(diff, t, df, student_t_two_sided_p(t, df))


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom (df may be fractional)."""
    x = df / (df + t * t)
    return regularized_incomplete_beta(df / 2, 0.5, x)


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) by its continued fraction (Lentz's method; Numerical Recipes 6.4)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only on this side
        return 1.0 - regularized_incomplete_beta(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return math.exp(log_front) * h / a


def time_to_accuracy(history: Sequence[dict[str, float]], threshold: float,
                     metric: str = "val_acc", clock: str = "epoch_time_s") -> float | None:
    """Wall seconds (summed per-epoch times, evaluation included) until `metric` first reaches
    `threshold`; None when it never does."""
    elapsed = 0.0
    for epoch in history:
        elapsed += epoch[clock]
        if epoch[metric] >= threshold:
            return elapsed
    return None
