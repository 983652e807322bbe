"""The report as Markdown: the claims with their verdicts, the tables, time to accuracy, claim 5
along the accuracy-vs-time frontier (when a frontier study has run), per-class accuracy and the
runs every number comes from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.core.data import CLASSES
from pipeline.core.metrics import TEST_ACC, TEST_LOSS, TRAIN_LOSS, VAL_ACC, VAL_LOSS
from pipeline.core.stats import time_to_accuracy
from pipeline.core.words import plural
from pipeline.replication.experiments import CLAIMS, TABLES, TIME_TO_ACC, VARIANTS, Table
from pipeline.replication.report.figures import PER_CLASS_KEYS
from pipeline.replication.report.frontier import frontier_markdown
from pipeline.replication.report.inputs import ReportInput, fmt, per_class_accuracy, spread
from pipeline.replication.report.verdicts import ALPHA, CLAIM_CHECKS


def table_markdown(input: ReportInput, table: Table) -> list[str]:
    """One table: every variant's spread over seeds beside the study's figures."""
    lines = [f"### Table {table.number}: {table.title}", ""]
    if table.number in input.table_run_ids:
        lines += [f"MLflow parent run: `{input.table_run_ids[table.number]}`", ""]
    lines += [
        "| variant | n | train loss | val loss | test loss | gap (val - train) | val acc % "
        "| test acc % | time (s) | study: val / test acc %, time (min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in table.variants:
        runs, v = input.runs[key], VARIANTS[key]
        s = v.study
        study = (
            "not in the study"
            if v.ours_only or s is None
            else " / ".join("-" if x is None else f"{100 * x:.2f}" for x in (s.val_acc, s.test_acc))
            + (f", {s.minutes:g}" if s.minutes else ", -")
        )
        lines.append(
            f"| {v.label} | {len(runs)} | {fmt(spread(runs, TRAIN_LOSS))} | "
            f"{fmt(spread(runs, VAL_LOSS))} | {fmt(spread(runs, TEST_LOSS))} | "
            f"{fmt(spread(runs, 'gap'))} | {fmt(spread(runs, VAL_ACC), True)} | "
            f"{fmt(spread(runs, TEST_ACC), True)} | {fmt(spread(runs, 'time'), digits=1)} | "
            f"{study} |"
        )
    if table.number == 5:
        for t in input.tuned:
            lines.append(
                f"| tuned champion: {t.label} | 1 | - | - | - | - | "
                f"{100 * t.val_acc:.2f} | {100 * t.test_acc:.2f} | - | "
                f"not in the study (`{t.model_uri}`, run `{t.run_id}`) |"
            )
    study_losses = [
        (VARIANTS[key].label, s)
        for key in table.variants
        if (s := VARIANTS[key].study) and s.train_loss is not None
    ]
    if study_losses:
        lines += [
            "",
            "The study's losses (train / val / test): "
            + "; ".join(
                f"{label} {s.train_loss:.4f} / {s.val_loss:.4f} / {s.test_loss:.4f}"
                for label, s in study_losses
            )
            + ".",
        ]
    lines += ["", f"![Table {table.number} curves](figures/table_{table.number}.png)", ""]
    return lines


def time_to_accuracy_markdown(input: ReportInput) -> list[str]:
    """Seconds until each validation accuracy mark of TIME_TO_ACC, per variant."""
    head = " | ".join(f"val {100 * t:.0f}%" for t in TIME_TO_ACC)
    lines = [
        "## Time to accuracy",
        "",
        "Wall seconds (training and per-epoch evaluation) until validation accuracy first "
        "reaches each mark; mean over the seeds that reached it, (reached / seeds).",
        "",
        f"| variant | {head} |",
        "|---|" + "---|" * len(TIME_TO_ACC),
    ]
    for key, runs in input.runs.items():
        cells = []
        for t in TIME_TO_ACC:
            times = [x for x in (time_to_accuracy(r.history, t) for r in runs) if x is not None]
            cells.append(
                f"{np.mean(times):.1f} ({len(times)}/{len(runs)})"
                if times
                else f"never (0/{len(runs)})"
            )
        lines.append(f"| {VARIANTS[key].label} | {' | '.join(cells)} |")
    return lines + [""]


def per_class_markdown(input: ReportInput, keys: Sequence[str]) -> list[str]:
    """Per-class test accuracy of `keys` (the first is the base FCN, one is the CNN), and
    the base FCN's most frequent confusions."""
    means = {k: per_class_accuracy(input, k)[0] for k in keys}
    lines = [
        "## Per-class test accuracy: FCN vs CNN",
        "",
        "| class | " + " | ".join(VARIANTS[k].label for k in keys) + " | CNN - base FCN |",
        "|---|" + "---|" * (len(keys) + 1),
    ]
    for i, c in enumerate(CLASSES):
        cells = " | ".join(f"{100 * means[k][i]:.1f}" for k in keys)
        lines.append(f"| {c} | {cells} | {100 * (means['cnn'][i] - means[keys[0]][i]):+.1f} |")
    counts = np.sum([r.confusion for r in input.runs[keys[0]]], axis=0, dtype=np.float64)
    rates = counts / counts.sum(1, keepdims=True)
    np.fill_diagonal(rates, 0)
    top = np.dstack(np.unravel_index(np.argsort(-rates, axis=None)[:6], rates.shape))[0]
    confused = "; ".join(
        f"{CLASSES[i]} taken for {CLASSES[j]} {100 * rates[i, j]:.1f}%" for i, j in top
    )
    lines += [
        "",
        f"The base FCN's most frequent confusions (share of the true class, all "
        f"seeds): {confused}.",
        "",
        "![Per-class accuracy](figures/per_class.png)",
        "",
    ]
    return lines


def markdown(input: ReportInput) -> str:
    """The whole report as Markdown (report.md); figures are linked as figures/<name>."""
    mode = (
        f"QUICK MODE ({input.train_size} training images, "
        f"{plural(input.epochs, 'FCN epoch')}, {plural(input.cnn_epochs, 'CNN epoch')}): "
        "a glance at the pipeline, not comparable with the study"
        if input.quick
        else f"{input.epochs} FCN epochs and {input.cnn_epochs} CNN epochs on all "
        f"{input.train_size} training images, as the study"
    )
    lines = [
        "# Replication of the FashionMNIST study",
        "",
        f"{mode}. Seeds {', '.join(map(str, input.seeds))} for every variant; "
        f"validation: 10,000 images held out of the 60,000 training images; test: the "
        f"untouched 10,000. Machine: {input.machine}. Wall time of the whole report: "
        f"{input.wall_s / 60:.1f} min.",
        "",
        "Cells: mean ± sample std [min, max] over seeds of the final epoch. Times are whole "
        "trainings with per-epoch evaluation, in seconds; the study's in minutes. Every "
        "number traces to an MLflow run: the table's parent run holds its variants' runs "
        "(or names them in runs.json), tagged `variant` and `seed`.",
        "",
        "## The study's claims",
        "",
        f"Test: Welch's two-sided t-test over seeds on the final test accuracy (validation "
        f"accuracy where the claim says so), significance level {ALPHA}. A difference with "
        f"p >= {ALPHA} is called inside the noise.",
        "",
    ]
    for n, (claim, check) in enumerate(zip(CLAIMS, CLAIM_CHECKS), 1):
        result, reasons = check(input)
        lines.append(f"{n}. **{claim}** Verdict: **{result}**.")
        lines += [f"   - {r}" for r in reasons]
    lines.append("")
    lines += ["## Tables", ""]
    for table in TABLES:
        lines += table_markdown(input, table)
    lines += time_to_accuracy_markdown(input)
    lines += frontier_markdown(input.frontier)
    lines += per_class_markdown(input, PER_CLASS_KEYS)
    lines += ["## Runs", "", "| variant | seed | MLflow run |", "|---|---|---|"]
    lines += [
        f"| {VARIANTS[k].label} | {r.seed} | `{r.run_id}` |"
        for k, runs in input.runs.items()
        for r in runs
    ]
    return "\n".join(lines) + "\n"
