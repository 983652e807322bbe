"""Claim 5 along the accuracy-vs-time frontier: at each time budget of a frontier study's
Pareto front, the best validation accuracy each model family reaches within it, and who wins.

The study is `tune --objectives val_acc,train_time_s` (pipeline/tuning/pareto.py); the report
carries its frontier.json (every completed trial: model, epochs, val_acc, train_time_s, run) in
`ReportInput.frontier`. Pure: made-up trials test it.
"""

from __future__ import annotations

from pipeline.core.metrics import TRAIN_TIME, VAL_ACC
from pipeline.core.words import MODEL_LABELS as LABELS


def label(model: str) -> str:
    return LABELS.get(model, model)


def front(trials: list[dict]) -> list[dict]:
    """The trials at which the best val_acc within the time so far rises, fastest first: the
    Pareto front, each point a time budget."""
    out: list[dict] = []
    for t in sorted(trials, key=lambda t: (t[TRAIN_TIME], -t[VAL_ACC])):
        if not out or t[VAL_ACC] > out[-1][VAL_ACC]:
            out.append(t)
    return out


def best_within(trials: list[dict], model: str, budget: float) -> dict | None:
    fits = [t for t in trials if t["model"] == model and t[TRAIN_TIME] <= budget]
    return max(fits, key=lambda t: t[VAL_ACC], default=None)


def answer(points: list[dict]) -> str:
    """Claim 5 in one sentence: which family wins from which budget on."""
    spans: list[tuple[str, float]] = []
    for p in points:
        if spans and spans[-1][0] == p["model"]:
            continue
        spans.append((p["model"], p[TRAIN_TIME]))
    said = "; ".join(f"the {label(m)} from {t:.1f} s" for m, t in spans)
    cnn = [t for m, t in spans if m != "fcn"]
    if not cnn:
        verdict = "no CNN wins at any budget of this study: claim 5 does not hold along its front"
    elif all(m != "fcn" for m, _ in spans):
        verdict = "a CNN wins at every budget, the fastest included: claim 5 holds along the front"
    elif spans[-1][0] != "fcn":
        verdict = (
            f"claim 5 holds from {cnn[0]:.1f} s on; below that the FCN gives more accuracy "
            "for the time (no CNN trial does better in so little time)"
        )
    else:
        verdict = "the FCN wins the largest budget again: claim 5 does not hold along the front"
    return f"Best model by time budget: {said}. So {verdict}."


def frontier_markdown(study: dict | None) -> list[str]:
    """The section, or nothing when no frontier study has run."""
    if not study:
        return []
    trials = study["trials"]
    head = ["## Claim 5 along the accuracy-vs-time frontier", ""]
    if not trials:
        return head + [f"Frontier study `{study['study_name']}` has no completed trial.", ""]
    models = [m for m in LABELS if any(t["model"] == m for t in trials)]
    models += sorted({t["model"] for t in trials} - set(models))
    points = front(trials)
    lines = head + [
        f"From frontier study `{study['study_name']}` (`tune --objectives val_acc,train_time_s`; "
        f"MLflow parent run `{study.get('run_id', '?')}`, whose `optuna/pareto_front.png` draws "
        f"it): {len(trials)} completed trials over {', '.join(map(label, models))}. Each row is a "
        "time budget at which the best validation accuracy rises (a point of the Pareto front); "
        "the cells are the best each family reaches within that budget. Times are whole "
        "trainings with per-epoch evaluation on the machine and load of that study, one seed.",
        "",
        "| time budget (s) | winner | " + " | ".join(label(m) for m in models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    for p in points:
        cells = []
        for m in models:
            best = best_within(trials, m, p[TRAIN_TIME])
            cells.append(
                "none this fast"
                if best is None
                else f"{100 * best[VAL_ACC]:.2f}% ({best['epochs']} ep)"
            )
        lines.append(
            f"| {p[TRAIN_TIME]:.1f} | {label(p['model'])} (trial {p['number']}, "
            f"{p['epochs']} ep) | {' | '.join(cells)} |"
        )
    return lines + ["", answer(points), ""]
