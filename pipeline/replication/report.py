"""The replication report from finished runs: tables, verdicts, figures, Markdown and HTML.

Pure: it takes the runs' histories and confusion matrices (and their MLflow run ids, to trace
every number) and returns text and matplotlib figures. `replicate` trains and logs; this module
only reads numbers, so it is tested on made-up runs.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from pipeline.core.data import CLASSES
from pipeline.replication.experiments import CLAIMS, TABLES, TIME_TO_ACC, VARIANTS, Table
from pipeline.replication.stats import Spread, per_class, time_to_accuracy, welch

ALPHA = 0.05
FIGURES = ("loss", "acc")
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


@dataclass
class SeedRun:
    """One finished training of one variant with one seed."""

    variant: str
    seed: int
    run_id: str
    history: list[dict[str, float]]
    train_time_s: float
    confusion: np.ndarray  # test set, rows true class

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1]


@dataclass
class TunedRow:
    """A tuned champion from an Optuna study: one run, shown beside the seeds' means."""

    label: str
    model_uri: str
    run_id: str
    val_acc: float
    test_acc: float


@dataclass
class ReportInput:
    runs: dict[str, list[SeedRun]]
    seeds: list[int]
    epochs: int
    cnn_epochs: int
    quick: bool
    train_size: int
    machine: str
    wall_s: float = 0.0
    tuned: list[TunedRow] = field(default_factory=list)
    table_run_ids: dict[int, str] = field(default_factory=dict)


def to_json(input: ReportInput) -> dict:
    """Every number of the report, with the MLflow run it comes from: `from_json` rebuilds the
    report from it without training again."""
    return {"seeds": input.seeds, "epochs": input.epochs, "cnn_epochs": input.cnn_epochs,
            "quick": input.quick, "train_size": input.train_size, "machine": input.machine,
            "wall_time_s": input.wall_s, "table_run_ids": input.table_run_ids,
            "runs": [{"variant": r.variant, "seed": r.seed, "run_id": r.run_id,
                      "train_time_s": r.train_time_s, "final": r.final, "history": r.history,
                      "test_confusion_counts": r.confusion.tolist()}
                     for rs in input.runs.values() for r in rs],
            "tuned": [dataclasses.asdict(t) for t in input.tuned]}


def from_json(d: dict) -> ReportInput:
    runs: dict[str, list[SeedRun]] = {}
    for r in d["runs"]:
        runs.setdefault(r["variant"], []).append(SeedRun(
            r["variant"], r["seed"], r["run_id"], r["history"], r["train_time_s"],
            np.asarray(r["test_confusion_counts"])))
    return ReportInput(runs=runs, seeds=d["seeds"], epochs=d["epochs"],
                       cnn_epochs=d["cnn_epochs"], quick=d["quick"], train_size=d["train_size"],
                       machine=d["machine"], wall_s=d["wall_time_s"],
                       tuned=[TunedRow(**t) for t in d["tuned"]],
                       table_run_ids={int(k): v for k, v in d["table_run_ids"].items()})


# --- numbers -------------------------------------------------------------------------------

def final_values(runs: Sequence[SeedRun], name: str) -> list[float]:
    if name == "gap":
        return [r.final["val_loss"] - r.final["train_loss"] for r in runs]
    if name == "time":
        return [r.train_time_s for r in runs]
    return [r.final[name] for r in runs]


def spread(runs: Sequence[SeedRun], name: str) -> Spread:
    return Spread.of(final_values(runs, name))


def fmt(s: Spread, percent: bool = False, digits: int | None = None) -> str:
    scale = 100 if percent else 1
    d = digits if digits is not None else (2 if percent else 4)
    if s.n == 1:
        return f"{scale * s.mean:.{d}f}"
    return (f"{scale * s.mean:.{d}f} ± {scale * s.std:.{d}f} "
            f"[{scale * s.min:.{d}f}, {scale * s.max:.{d}f}]")


def compare(input: ReportInput, a: str, b: str, metric: str = "test_acc") -> tuple[int, str]:
    """+1 / -1 when `a` is significantly above / below `b` (Welch, two-sided, p < ALPHA),
    0 inside the noise; and the sentence that says so with the numbers."""
    va, vb = final_values(input.runs[a], metric), final_values(input.runs[b], metric)
    la, lb = VARIANTS[a].label, VARIANTS[b].label
    diff = 100 * (np.mean(va) - np.mean(vb))
    head = (f"{la} {100 * np.mean(va):.2f}% vs {lb} {100 * np.mean(vb):.2f}% "
            f"({metric}): {diff:+.2f} points")
    if len(va) < 2 or len(vb) < 2:
        return 0, f"{head}, one seed each: no test possible"
    c = welch(va, vb)
    if not c.significant(ALPHA):
        return 0, f"{head}, p = {c.p:.2g}: inside the noise"
    return (1 if c.diff > 0 else -1), f"{head}, p = {c.p:.2g}: {'above' if c.diff > 0 else 'below'}"


def best_of(input: ReportInput, keys: Sequence[str], metric: str) -> str:
    return max(keys, key=lambda k: np.mean(final_values(input.runs[k], metric)))


# --- the five verdicts ----------------------------------------------------------------------

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
    sgd = best_of(input, ("sgd_0.02", "sgd_0.05"), "test_acc")
    p1, s1 = compare(input, "adam_8e-5", "rmsprop_1e-4")
    p2, s2 = compare(input, "rmsprop_1e-4", sgd)
    return verdict((p1, p2), (1, 1)), [s1, s2 + f" (the better SGD rate is {VARIANTS[sgd].label})"]


def claim_2(input: ReportInput) -> tuple[str, list[str]]:
    p1, s1 = compare(input, "dropout_0.1", "sgd_0.02")
    p3, s3 = compare(input, "dropout_0.5", "sgd_0.02")
    base = input.runs["sgd_0.02"]
    gap = spread(base, "gap")
    rise = np.mean([r.final["val_loss"] / min(h["val_loss"] for h in r.history) - 1
                    for r in base])
    overfits = rise > 0.05
    s2 = (f"base FCN generalisation gap (val loss - train loss) {fmt(gap)}; its final val loss "
          f"is {100 * rise:.1f}% above its best epoch's: "
          f"{'it overfits' if overfits else 'no real overfitting'} (threshold 5%)")
    slight = p1 == 1 and 100 * (np.mean(final_values(input.runs["dropout_0.1"], "test_acc"))
                                - np.mean(final_values(base, "test_acc"))) < 1.0
    helps = 1 if (slight or p1 == 0) else p1  # "only slightly": a small or unmeasurable gain
    parts = (helps, 1 if not overfits else -1, -p3 if p3 else 0)
    return verdict(parts, (1, 1, 1)), [s1 + (" (slight)" if slight else ""), s2, s3]


def claim_3(input: ReportInput) -> tuple[str, list[str]]:
    inits = ("sgd_0.02", "init_normal", "init_xavier_normal", "init_kaiming_uniform")
    lines, parts = [], []
    for target, metric, best in (("init_kaiming_uniform", "test_acc", True),
                                 ("init_xavier_normal", "val_acc", True),
                                 ("init_normal", "test_acc", False)):
        others = [k for k in inits if k != target]
        rival = (best_of if best else worst_of)(input, others, metric)
        p, s = compare(input, target, rival, metric)
        winner = (best_of if best else worst_of)(input, inits, metric)
        lines.append(f"{'best' if best else 'least'} {metric}: claimed {VARIANTS[target].label}, "
                     f"measured {VARIANTS[winner].label}; {s}")
        parts.append(p if best else -p)
    return verdict(parts, (1, 1, 1)), lines


def worst_of(input: ReportInput, keys: Sequence[str], metric: str) -> str:
    return min(keys, key=lambda k: np.mean(final_values(input.runs[k], metric)))


def claim_4(input: ReportInput) -> tuple[str, list[str]]:
    p1, s1 = compare(input, "batch_norm_0.008", "sgd_0.02")
    p2, s2 = compare(input, "batch_norm_0.008", "batch_norm_0.02")
    return verdict((p1, p2), (1, 1)), [s1, s2]


def claim_5(input: ReportInput) -> tuple[str, list[str]]:
    fcns = [k for k in input.runs if VARIANTS[k].config.model == "fcn"]
    best = best_of(input, fcns, "test_acc")
    p1, s1 = compare(input, "cnn", best)
    cnn_t = np.mean(final_values(input.runs["cnn"], "time"))
    fcn_t = np.mean(final_values(input.runs[best], "time"))
    faster = 1 if cnn_t < fcn_t else -1
    s2 = (f"time: CNN {cnn_t:.0f} s for {plural(input.cnn_epochs, 'epoch')} vs best FCN "
          f"{fcn_t:.0f} s for {plural(input.epochs, 'epoch')} on this machine: the CNN is "
          f"{'faster' if faster == 1 else 'slower'} (whole trainings, evaluation included)")
    fewer = 1 if input.cnn_epochs < input.epochs else -1
    return verdict((p1, fewer, faster), (1, 1, 1)), [f"best FCN is {VARIANTS[best].label}; "
                                                     + s1, s2]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


CLAIM_CHECKS = (claim_1, claim_2, claim_3, claim_4, claim_5)


# --- figures --------------------------------------------------------------------------------

def table_figure(input: ReportInput, table: Table) -> Figure:
    """Loss (train dashed, val solid) and val accuracy of every variant on shared axes; the
    line is the mean over seeds, the band its min..max."""
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for color, key in zip(COLORS, table.variants):
        runs = input.runs[key]
        n = min(len(r.history) for r in runs)
        epochs = np.arange(1, n + 1)
        label = f"{VARIANTS[key].label} (n={len(runs)})"
        for ax, name, style, scale, lab in ((loss_ax, "train_loss", "--", 1, None),
                                            (loss_ax, "val_loss", "-", 1, label),
                                            (acc_ax, "val_acc", "-", 100, label)):
            values = scale * np.array([[h[name] for h in r.history[:n]] for r in runs])
            ax.plot(epochs, values.mean(0), style, color=color, label=lab,
                    marker="." if n < 15 else None)
            if len(runs) > 1:
                ax.fill_between(epochs, values.min(0), values.max(0), color=color, alpha=0.15,
                                linewidth=0)
    loss_ax.set(title="Cross-entropy loss (solid: validation, dashed: training)",
                xlabel="epoch", ylabel="loss")
    acc_ax.set(title="Validation accuracy (mean over seeds; band: min..max)", xlabel="epoch",
               ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        longest = max(len(r.history) for k in table.variants for r in input.runs[k])
        if longest <= 12:
            ax.set_xticks(np.arange(1, longest + 1))
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(*acc_ax.get_legend_handles_labels(), loc="outside lower center",
               ncols=len(table.variants), fontsize=9)
    # Zoom the accuracy axis on the interesting part: above the worst first-epoch mean.
    floor = min(100 * np.mean([r.history[0]["val_acc"] for r in input.runs[k]])
                for k in table.variants)
    top = max(100 * max(h["val_acc"] for r in input.runs[k] for h in r.history)
              for k in table.variants)
    acc_ax.set_ylim(max(floor - 1, 0), min(top + 0.7, 100))
    fig.suptitle(f"Table {table.number}: {table.title}")
    return fig


def per_class_accuracy(input: ReportInput, key: str) -> tuple[np.ndarray, np.ndarray]:
    recalls = np.array([per_class(r.confusion)["recall"] for r in input.runs[key]])
    return recalls.mean(0), recalls.std(0, ddof=1) if len(recalls) > 1 else np.zeros(len(CLASSES))


def per_class_figure(input: ReportInput, keys: Sequence[str]) -> Figure:
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(keys)
    x = np.arange(len(CLASSES))
    for i, (key, color) in enumerate(zip(keys, COLORS)):
        mean, std = per_class_accuracy(input, key)
        ax.bar(x + (i - (len(keys) - 1) / 2) * width, 100 * mean, width, yerr=100 * std,
               color=color, label=f"{VARIANTS[key].label} (n={len(input.runs[key])})",
               capsize=2)
    ax.set_xticks(x, CLASSES, rotation=20, ha="right")
    low = min(100 * per_class_accuracy(input, k)[0].min() for k in keys)
    ax.set_ylim(max(low - 8, 0), 100)
    ax.set(ylabel="test accuracy of the class (%)", xlabel="true class",
           title="Per-class test accuracy (recall), mean over seeds; bars: ± std")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return fig


# --- text -----------------------------------------------------------------------------------

def table_markdown(input: ReportInput, table: Table) -> list[str]:
    lines = [f"### Table {table.number}: {table.title}", ""]
    if table.number in input.table_run_ids:
        lines += [f"MLflow parent run: `{input.table_run_ids[table.number]}`", ""]
    lines += ["| variant | n | train loss | val loss | test loss | gap (val - train) | val acc % "
              "| test acc % | time (s) | study: val / test acc %, time (min) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for key in table.variants:
        runs, v = input.runs[key], VARIANTS[key]
        s = v.study
        study = "not in the study" if v.ours_only else " / ".join(
            "-" if x is None else f"{100 * x:.2f}" for x in (s.val_acc, s.test_acc)) + (
            f", {s.minutes:g}" if s.minutes else ", -")
        lines.append(
            f"| {v.label} | {len(runs)} | {fmt(spread(runs, 'train_loss'))} | "
            f"{fmt(spread(runs, 'val_loss'))} | {fmt(spread(runs, 'test_loss'))} | "
            f"{fmt(spread(runs, 'gap'))} | {fmt(spread(runs, 'val_acc'), True)} | "
            f"{fmt(spread(runs, 'test_acc'), True)} | {fmt(spread(runs, 'time'), digits=1)} | "
            f"{study} |")
    if table.number == 5:
        for t in input.tuned:
            lines.append(f"| tuned champion: {t.label} | 1 | - | - | - | - | "
                         f"{100 * t.val_acc:.2f} | {100 * t.test_acc:.2f} | - | "
                         f"not in the study (`{t.model_uri}`, run `{t.run_id}`) |")
    study_losses = [key for key in table.variants if VARIANTS[key].study
                    and VARIANTS[key].study.train_loss is not None]
    if study_losses:
        lines += ["", "The study's losses (train / val / test): " + "; ".join(
            f"{VARIANTS[k].label} {VARIANTS[k].study.train_loss:.4f} / "
            f"{VARIANTS[k].study.val_loss:.4f} / {VARIANTS[k].study.test_loss:.4f}"
            for k in study_losses) + "."]
    lines += ["", f"![Table {table.number} curves](figures/table_{table.number}.png)", ""]
    return lines


def time_to_accuracy_markdown(input: ReportInput) -> list[str]:
    head = " | ".join(f"val {100 * t:.0f}%" for t in TIME_TO_ACC)
    lines = ["## Time to accuracy", "",
             "Wall seconds (training and per-epoch evaluation) until validation accuracy first "
             "reaches each mark; mean over the seeds that reached it, (reached / seeds).", "",
             f"| variant | {head} |", "|---|" + "---|" * len(TIME_TO_ACC)]
    for key, runs in input.runs.items():
        cells = []
        for t in TIME_TO_ACC:
            times = [x for x in (time_to_accuracy(r.history, t) for r in runs) if x is not None]
            cells.append(f"{np.mean(times):.1f} ({len(times)}/{len(runs)})" if times
                         else f"never (0/{len(runs)})")
        lines.append(f"| {VARIANTS[key].label} | {' | '.join(cells)} |")
    return lines + [""]


def per_class_markdown(input: ReportInput, keys: Sequence[str]) -> list[str]:
    means = {k: per_class_accuracy(input, k)[0] for k in keys}
    lines = ["## Per-class test accuracy: FCN vs CNN", "",
             "| class | " + " | ".join(VARIANTS[k].label for k in keys) + " | CNN - base FCN |",
             "|---|" + "---|" * (len(keys) + 1)]
    for i, c in enumerate(CLASSES):
        cells = " | ".join(f"{100 * means[k][i]:.1f}" for k in keys)
        lines.append(f"| {c} | {cells} | {100 * (means['cnn'][i] - means[keys[0]][i]):+.1f} |")
    counts = sum(r.confusion for r in input.runs[keys[0]]).astype(np.float64)
    rates = counts / counts.sum(1, keepdims=True)
    np.fill_diagonal(rates, 0)
    top = np.dstack(np.unravel_index(np.argsort(-rates, axis=None)[:6], rates.shape))[0]
    confused = "; ".join(f"{CLASSES[i]} taken for {CLASSES[j]} {100 * rates[i, j]:.1f}%"
                         for i, j in top)
    lines += ["", f"The base FCN's most frequent confusions (share of the true class, all "
                  f"seeds): {confused}.", "", "![Per-class accuracy](figures/per_class.png)", ""]
    return lines


def markdown(input: ReportInput) -> str:
    mode = (f"QUICK MODE ({input.train_size} training images, "
            f"{plural(input.epochs, 'FCN epoch')}, {plural(input.cnn_epochs, 'CNN epoch')}): a glance at the pipeline, not comparable with the "
            "study" if input.quick else
            f"{input.epochs} FCN epochs and {input.cnn_epochs} CNN epochs on all "
            f"{input.train_size} training images, as the study")
    lines = ["# Replication of the FashionMNIST study", "",
             f"{mode}. Seeds {', '.join(map(str, input.seeds))} for every variant; "
             f"validation: 10,000 images held out of the 60,000 training images; test: the "
             f"untouched 10,000. Machine: {input.machine}. Wall time of the whole report: "
             f"{input.wall_s / 60:.1f} min.", "",
             "Cells: mean ± sample std [min, max] over seeds of the final epoch. Times are whole "
             "trainings with per-epoch evaluation, in seconds; the study's in minutes. Every "
             "number traces to an MLflow run: the table's parent run holds its variants' runs "
             "(or names them in runs.json), tagged `variant` and `seed`.", "",
             "## The study's claims", "",
             f"Test: Welch's two-sided t-test over seeds on the final test accuracy (validation "
             f"accuracy where the claim says so), significance level {ALPHA}. A difference with "
             f"p >= {ALPHA} is called inside the noise.", ""]
    for n, (claim, check) in enumerate(zip(CLAIMS, CLAIM_CHECKS), 1):
        result, reasons = check(input)
        lines.append(f"{n}. **{claim}** Verdict: **{result}**.")
        lines += [f"   - {r}" for r in reasons]
    lines.append("")
    lines += ["## Tables", ""]
    for table in TABLES:
        lines += table_markdown(input, table)
    lines += time_to_accuracy_markdown(input)
    lines += per_class_markdown(input, ("sgd_0.02", "adam_8e-5", "cnn"))
    lines += ["## Runs", "", "| variant | seed | MLflow run |", "|---|---|---|"]
    lines += [f"| {VARIANTS[k].label} | {r.seed} | `{r.run_id}` |"
              for k, runs in input.runs.items() for r in runs]
    return "\n".join(lines) + "\n"


def figures(input: ReportInput) -> dict[str, Figure]:
    out = {f"table_{t.number}.png": table_figure(input, t) for t in TABLES}
    out["per_class.png"] = per_class_figure(input, ("sgd_0.02", "adam_8e-5", "cnn"))
    return out


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def to_html(text: str, images: dict[str, bytes]) -> str:
    """A self-contained page (images inlined) from the report's own small Markdown subset:
    headings, paragraphs, numbered and bulleted lists, tables, bold, code and images. MLflow's
    artifact view renders it."""
    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    out, in_table, in_list = [], False, False
    for line in text.splitlines():
        image = re.fullmatch(r"!\[(.*)\]\(figures/(.+)\)", line.strip())
        bullet = re.match(r"^\s*- (.*)", line)
        if in_list and not bullet:
            out.append("</ul>")
            in_list = False
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            tag = "td" if in_table else "th"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if bullet:
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{inline(bullet.group(1))}</li>")
            continue
        if image:
            data = base64.b64encode(images[image.group(2)]).decode()
            out.append(f'<img alt="{html.escape(image.group(1))}" '
                       f'src="data:image/png;base64,{data}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    out.append("</table>" if in_table else "</ul>" if in_list else "")
    style = ("body{font-family:sans-serif;max-width:1250px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
             "th{background:#f3f3f3}img{max-width:100%}li{margin:.3em 0}"
             "code{font-size:12px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>FashionMNIST study "
            f"replication</title><style>{style}</style></head><body>{chr(10).join(out)}"
            "</body></html>\n")
