"""The replication report on made-up runs: every table and claim, verdicts that follow the
numbers, figures, a self-contained HTML page, and a lossless results.json."""

import json

import numpy as np
import pytest

from pipeline.replication.experiments import CLAIMS, TABLES, VARIANTS, variant_keys
from pipeline.replication.report import figures, inputs, page, text


def fake_runs(test_acc: dict[str, float], noise: float, seeds=(0, 1, 2), epochs=3):
    """Runs whose final test (and val) accuracy is `test_acc[key]` plus seeded noise."""
    rng = np.random.default_rng(0)
    runs = {}
    for key in variant_keys():
        runs[key] = []
        for seed in seeds:
            acc = test_acc.get(key, 0.87) + noise * rng.standard_normal()
            history = [
                {
                    "train_loss": 0.5 - 0.1 * e,
                    "val_loss": 0.45 - 0.05 * e,
                    "test_loss": 0.46 - 0.05 * e,
                    "train_acc": acc - 0.02,
                    "val_acc": acc - 0.03 * (epochs - 1 - e),
                    "test_acc": acc,
                    "epoch_time_s": 1.5,
                }
                for e in range(epochs)
            ]
            confusion = np.diag(np.full(10, 900)) + rng.integers(0, 20, (10, 10))
            runs[key].append(
                inputs.SeedRun(key, seed, f"run-{key}-{seed}", history, 4.5, confusion)
            )
    return runs


def make_input(runs, seeds=(0, 1, 2)):
    return inputs.ReportInput(
        runs=runs,
        seeds=list(seeds),
        epochs=3,
        cnn_epochs=2,
        quick=True,
        train_size=10_000,
        machine="test machine",
        wall_s=60.0,
        tuned=[
            inputs.TunedRow(
                "fcn (fcn trial 3)", "models:/fashion-mnist-fcn@champion", "abc", 0.905, 0.899
            )
        ],
        table_run_ids={t.number: f"table-{t.number}" for t in TABLES},
    )


CLAIMED = {
    "sgd_0.02": 0.860,
    "sgd_0.05": 0.870,
    "rmsprop_1e-4": 0.879,
    "adam_8e-5": 0.884,
    "dropout_0.1": 0.865,
    "dropout_0.5": 0.84,
    "init_normal": 0.85,
    "init_xavier_normal": 0.862,
    "init_kaiming_uniform": 0.873,
    "batch_norm_0.008": 0.877,
    "batch_norm_0.02": 0.866,
    "cnn": 0.93,
}


def verdicts(markdown: str) -> list[str]:
    return [
        line.split("Verdict: **")[1].split("**")[0]
        for line in markdown.splitlines()
        if "Verdict:" in line
    ]


def test_every_table_and_claim_is_in_the_report():
    markdown = text.markdown(make_input(fake_runs(CLAIMED, 0.001)))
    for table in TABLES:
        assert f"### Table {table.number}: {table.title}" in markdown
        assert f"MLflow parent run: `table-{table.number}`" in markdown
    for claim in CLAIMS:
        assert claim in markdown
    assert len(verdicts(markdown)) == len(CLAIMS)
    assert "## Time to accuracy" in markdown and "## Per-class test accuracy" in markdown
    assert "gap (val - train)" in markdown and "Welch" in markdown
    assert "tuned champion: fcn (fcn trial 3)" in markdown
    assert "run-adam_8e-5-2" in markdown  # every number traces to a run
    assert "87.63 / 86.03, 13.65" in markdown  # the study's figure beside ours


def test_verdicts_follow_the_numbers():
    clear = verdicts(text.markdown(make_input(fake_runs(CLAIMED, 0.001))))
    assert clear[0] == "supported"  # Adam > RMSprop > SGD, far outside the noise
    assert clear[3] == "supported"  # batch norm 0.008 beats base and batch norm 0.02
    reversed_ = dict(CLAIMED, **{"adam_8e-5": 0.860, "sgd_0.02": 0.884, "sgd_0.05": 0.884})
    assert verdicts(text.markdown(make_input(fake_runs(reversed_, 0.001))))[0] == "refuted"
    noisy = verdicts(text.markdown(make_input(fake_runs(CLAIMED, 0.05))))
    assert noisy[0].startswith("not shown") or "noise" in noisy[0]


def test_one_seed_says_no_test_is_possible():
    markdown = text.markdown(make_input(fake_runs(CLAIMED, 0.001, seeds=(0,)), seeds=(0,)))
    assert "one seed each: no test possible" in markdown


def test_figures_and_html_are_self_contained():
    report = make_input(fake_runs(CLAIMED, 0.002))
    images = {name: figures.png(fig) for name, fig in figures.figures(report).items()}
    assert set(images) == {f"table_{t.number}.png" for t in TABLES} | {"per_class.png"}
    assert all(content.startswith(b"\x89PNG") for content in images.values())
    html = page.to_html(text.markdown(report), images)
    assert html.count("data:image/png;base64,") == len(images)
    assert html.count("<table>") == html.count("</table>") >= len(TABLES) + 2
    assert "figures/" not in html  # nothing points outside the page
    assert "<strong>supported</strong>" in html and "<td>base: SGD lr 0.02</td>" in html


def test_html_escapes_what_the_runs_say():
    report = make_input(fake_runs(CLAIMED, 0.002))
    report.machine = "<script>alert(1)</script>"
    images = {name: figures.png(fig) for name, fig in figures.figures(report).items()}
    html = page.to_html(text.markdown(report), images)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_results_json_rebuilds_the_same_report():
    report = make_input(fake_runs(CLAIMED, 0.002))
    again = inputs.from_json(json.loads(json.dumps(inputs.to_json(report))))
    assert text.markdown(again) == text.markdown(report)


def test_the_study_rows_are_the_studys_figures():
    assert VARIANTS["adam_8e-5"].study.test_acc == pytest.approx(0.8841)
    assert VARIANTS["batch_norm_0.008"].config.lr == 0.008
    assert VARIANTS["init_kaiming_uniform"].config.init == "kaiming_uniform"
    assert VARIANTS["cnn"].config.epochs == 10 and VARIANTS["sgd_0.02"].config.epochs == 50
