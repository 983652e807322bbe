"""The study's five claims, each checked against the runs: Welch's t-test over seeds says
whether a difference is outside the noise, and `verdict` sums the parts up."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.core.metrics import TEST_ACC, VAL_ACC, VAL_LOSS
from pipeline.core.stats import ALPHA, welch
from pipeline.core.words import plural
from pipeline.replication.experiments import VARIANTS
from pipeline.replication.report.inputs import ReportInput, final_values, fmt, spread


def compare(input: ReportInput, a: str, b: str, metric: str = TEST_ACC) -> tuple[int, str]:
    """+1 / -1 when `a` is significantly above / below `b` (Welch, two-sided, p < ALPHA),
    0 inside the noise; and the sentence that says so with the numbers."""
    va, vb = final_values(input.runs[a], metric), final_values(input.runs[b], metric)
    la, lb = VARIANTS[a].label, VARIANTS[b].label
    diff = 100 * (np.mean(va) - np.mean(vb))
    head = (
        f"{la} {100 * np.mean(va):.2f}% vs {lb} {100 * np.mean(vb):.2f}% "
        f"({metric}): {diff:+.2f} points"
    )
    if len(va) < 2 or len(vb) < 2:
        return 0, f"{head}, one seed each: no test possible"
    c = welch(va, vb)
    if not c.significant(ALPHA):
        return 0, f"{head}, p = {c.p:.2g}: inside the noise"
    return (1 if c.diff > 0 else -1), f"{head}, p = {c.p:.2g}: {'above' if c.diff > 0 else 'below'}"


def best_of(input: ReportInput, keys: Sequence[str], metric: str) -> str:
    """The variant of `keys` with the highest mean `metric`."""
    return max(keys, key=lambda k: np.mean(final_values(input.runs[k], metric)))


def verdict(parts: Sequence[int], wanted: Sequence[int]) -> str:
    """'supported' when every part went the claimed way with significance, 'refuted' when one
    went significantly the other way, otherwise 'not shown' (inside the noise)."""
    if any(p == -w for p, w in zip(parts, wanted) if w != 0):
        return "refuted" if all(p == -w for p, w in zip(parts, wanted)) else "partly refuted"
    if all(p == w for p, w in zip(parts, wanted)):
        return "supported"
    if any(p == w for p, w in zip(parts, wanted)):
        return "partly supported (the rest inside the noise)"
    return "not shown: the differences are inside the noise"


def claim_1(input: ReportInput) -> tuple[str, list[str]]:
    """Adam > RMSprop > (the better) SGD."""
    sgd = best_of(input, ("sgd_0.02", "sgd_0.05"), TEST_ACC)
    p1, s1 = compare(input, "adam_8e-5", "rmsprop_1e-4")
    p2, s2 = compare(input, "rmsprop_1e-4", sgd)
    return verdict((p1, p2), (1, 1)), [s1, s2 + f" (the better SGD rate is {VARIANTS[sgd].label})"]


def claim_2(input: ReportInput) -> tuple[str, list[str]]:
    """Dropout 0.1 helps slightly, the base FCN does not overfit, dropout 0.5 hurts."""
    p1, s1 = compare(input, "dropout_0.1", "sgd_0.02")
    p3, s3 = compare(input, "dropout_0.5", "sgd_0.02")
    base = input.runs["sgd_0.02"]
    gap = spread(base, "gap")
    rise = np.mean([r.final[VAL_LOSS] / min(h[VAL_LOSS] for h in r.history) - 1 for r in base])
    overfits = rise > 0.05
    s2 = (
        f"base FCN generalisation gap (val loss - train loss) {fmt(gap)}; its final val loss "
        f"is {100 * rise:.1f}% above its best epoch's: "
        f"{'it overfits' if overfits else 'no real overfitting'} (threshold 5%)"
    )
    slight = (
        p1 == 1
        and 100
        * (
            np.mean(final_values(input.runs["dropout_0.1"], TEST_ACC))
            - np.mean(final_values(base, TEST_ACC))
        )
        < 1.0
    )
    helps = 1 if (slight or p1 == 0) else p1  # "only slightly": a small or unmeasurable gain
    parts = (helps, 1 if not overfits else -1, -p3 if p3 else 0)
    return verdict(parts, (1, 1, 1)), [s1 + (" (slight)" if slight else ""), s2, s3]


def claim_3(input: ReportInput) -> tuple[str, list[str]]:
    """Kaiming uniform best on test, Xavier normal best on validation, random normal least."""
    inits = ("sgd_0.02", "init_normal", "init_xavier_normal", "init_kaiming_uniform")
    lines, parts = [], []
    for target, metric, best in (
        ("init_kaiming_uniform", TEST_ACC, True),
        ("init_xavier_normal", VAL_ACC, True),
        ("init_normal", TEST_ACC, False),
    ):
        others = [k for k in inits if k != target]
        rival = (best_of if best else worst_of)(input, others, metric)
        p, s = compare(input, target, rival, metric)
        winner = (best_of if best else worst_of)(input, inits, metric)
        lines.append(
            f"{'best' if best else 'least'} {metric}: claimed {VARIANTS[target].label}, "
            f"measured {VARIANTS[winner].label}; {s}"
        )
        parts.append(p if best else -p)
    return verdict(parts, (1, 1, 1)), lines


def worst_of(input: ReportInput, keys: Sequence[str], metric: str) -> str:
    """The variant of `keys` with the lowest mean `metric`."""
    return min(keys, key=lambda k: np.mean(final_values(input.runs[k], metric)))


def claim_4(input: ReportInput) -> tuple[str, list[str]]:
    """Batch norm at lr 0.008 beats the base FCN and batch norm at lr 0.02."""
    p1, s1 = compare(input, "batch_norm_0.008", "sgd_0.02")
    p2, s2 = compare(input, "batch_norm_0.008", "batch_norm_0.02")
    return verdict((p1, p2), (1, 1)), [s1, s2]


def claim_5(input: ReportInput) -> tuple[str, list[str]]:
    """The CNN beats the best FCN, in fewer epochs and less time."""
    fcns = [k for k in input.runs if VARIANTS[k].config.model == "fcn"]
    best = best_of(input, fcns, TEST_ACC)
    p1, s1 = compare(input, "cnn", best)
    cnn_t = np.mean(final_values(input.runs["cnn"], "time"))
    fcn_t = np.mean(final_values(input.runs[best], "time"))
    faster = 1 if cnn_t < fcn_t else -1
    s2 = (
        f"time: CNN {cnn_t:.0f} s for {plural(input.cnn_epochs, 'epoch')} vs best FCN "
        f"{fcn_t:.0f} s for {plural(input.epochs, 'epoch')} on this machine: the CNN is "
        f"{'faster' if faster == 1 else 'slower'} (whole trainings, evaluation included)"
    )
    fewer = 1 if input.cnn_epochs < input.epochs else -1
    return verdict((p1, fewer, faster), (1, 1, 1)), [
        f"best FCN is {VARIANTS[best].label}; " + s1,
        s2,
    ]


CLAIM_CHECKS = (claim_1, claim_2, claim_3, claim_4, claim_5)
