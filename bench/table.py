"""The benchmark's summary: one line or two per measured section, as `make bench` prints it."""

from __future__ import annotations

from bench import ray_overhead
from pipeline.core.metrics import TEST_ACC


def table(results: dict) -> str:
    r = results
    lines = [
        f"machine: {r['machine']['description']}"
        + ("  [QUICK: tiny sizes, not comparable]" if r["quick"] else "")
    ]
    for key, lines_of in SECTION_LINES:
        if key in r:
            lines += lines_of(r)
    return "\n".join(lines)


def _cli(r: dict) -> list[str]:
    c = r["cli"]
    return [
        f"CLI latency: --help {c['help_s']:.2f} s, train --help "
        f"{c['train_help_s']:.2f} s, an argument error {c['argument_error_s']:.2f} s"
    ]


def _matmul(r: dict) -> list[str]:
    return [f"matmul {r['matmul']['size']}^2 float32:   {r['matmul']['gflops']:.0f} GFLOP/s"]


def _fcn(r: dict) -> list[str]:
    f = r["fcn"]
    return [
        f"base FCN, our core:        {f['wall_s']:.1f} s for {f['epochs']} epochs "
        f"({f['epoch_s_median']:.2f} s/epoch; {f['gflop_per_epoch']:.0f} GFLOP/epoch;"
        f" floor {f['floor_s']:.1f} s; {f['ratio_to_floor']:.2f}x the floor), "
        f"test {100 * f[TEST_ACC]:.2f}%",
        f"  its matmuls alone, at the batch's shapes: {f['gemm_epoch_s']:.2f} s/epoch "
        f"({f['gemm_gflops']:.0f} GFLOP/s); the whole training is "
        f"{f['ratio_to_gemm_floor']:.2f}x that",
        *(
            [
                f"  a 784-8-10 FCN's epoch, the same steps without the widths' matmuls: "
                f"{f['narrow_epoch_s']:.2f} s ({f['narrow_epoch_s'] / f['gemm_epoch_s']:.2f}x "
                "the matmuls above)"
            ]
            if "narrow_epoch_s" in f
            else []
        ),
    ]


def _study_loop(r: dict) -> list[str]:
    s = r["study_loop"]
    line = (
        f"base FCN, study's loop:    {s['wall_s']:.1f} s for {s['epochs']} epochs "
        f"({s['epoch_s_median']:.2f} s/epoch), test {100 * s[TEST_ACC]:.2f}%"
    )
    if "fcn" in r and r["fcn"]["epochs"] == s["epochs"] and not r["quick"]:
        line += f"; ours is {s['wall_s'] / r['fcn']['wall_s']:.1f}x faster"
    elif "fcn" in r:
        ratio = s["epoch_s_median"] / r["fcn"]["epoch_s_median"]
        line += f"; per epoch ours is {ratio:.1f}x faster"
    return [line]


def _cnn(key: str, label: str):
    def lines(r: dict) -> list[str]:
        c = r[key]
        out = [
            f"{label}, {c['config']['epochs']} epochs: ".ljust(27)
            + f"{c['wall_s']:.1f} s ({c['epoch_s_median']:.1f} s/epoch), test "
            f"{100 * c[TEST_ACC]:.2f}% (best epoch {100 * c['best_test_acc']:.2f}%)"
        ]
        marks = ", ".join(
            f"{k.split('_')[-1]}%: " + ("not reached" if v is None else f"{v:.0f} s")
            for k, v in c.items()
            if k.startswith("seconds_to_test")
        )
        return out + ([f"  time to test accuracy: {marks}"] if marks else [])

    return lines


def _recipes(r: dict) -> list[str]:
    labels = {
        "fast_cnn": "fast CNN recipe (50,000 images, 10,000 held out)",
        "fast_cnn_all": "fast CNN recipe on all 60,000 (--holdout false)",
        "wide_fcn": "FCN recipe (1024-512)",
    }
    lines = []
    for key, label in labels.items():
        c = r["recipes"].get(key)
        if c is None:  # a results file from before this recipe was measured
            continue
        seeds = ", ".join(f"{100 * run[TEST_ACC]:.2f}" for run in c["runs"])
        val = f"val {100 * c['val_acc_mean']:.2f}%" if "val_acc_mean" in c else "no val split"
        lines.append(
            f"{label}, {c['config']['epochs']} epochs, {len(c['runs'])} seeds: test "
            f"{100 * c['test_acc_mean']:.2f}% ± {100 * c['test_acc_std']:.2f} ({seeds}), "
            f"{val}, {c['wall_s_mean']:.0f} ± {c['wall_s_std']:.0f} s"
        )
        if key != "wide_fcn" and all("seconds_to_test_94.0" in run for run in c["runs"]):
            reached = [
                run["seconds_to_test_94.0"]
                for run in c["runs"]
                if run["seconds_to_test_94.0"] is not None
            ]
            lines.append(
                f"  test 94.0% at some epoch in {len(reached)} of {len(c['runs'])} "
                f"runs (best epochs: "
                + ", ".join(f"{100 * run['best_test_acc']:.2f}" for run in c["runs"])
                + ")"
            )
    return lines


def _tracking(r: dict) -> list[str]:
    t = r["tracking"]
    lines = [
        f"tracking overhead, {t['epochs']} epochs: plain {t['plain_s']:.1f} s, "
        f"MLflow run {t['tracked_run_s']:.1f} s ({t['tracked_ratio']:.2f}x), "
        f"Optuna trial {t['trial_s']:.1f} s ({t['trial_ratio']:.2f}x)"
    ]
    if "system_metrics_ratio" in t:  # results of earlier versions lack these
        lines.append(
            f"  system metrics every 5 s: run {t['tracked_no_system_metrics_s']:.1f} s "
            f"off, {t['tracked_run_s']:.1f} s on ({t['system_metrics_ratio']:.3f}x); "
            f"one logged model {t['model_bytes'] / 1e6:.2f} MB (its state_dict "
            f"{t['state_dict_bytes'] / 1e6:.2f} MB)"
        )
    return lines


def _tune(r: dict) -> list[str]:
    t = r["tune"]
    return [
        f"tune trials/hour ({t['seconds']:.0f} s each, {t['epochs']} epochs): "
        f"1 process x 2 threads {t['1x2']['trials_per_hour']:.0f}, 2 processes x 1 "
        f"thread {t['2x1']['trials_per_hour']:.0f} -> {t['best']}"
    ]


def _study(r: dict) -> list[str]:
    s = r["study"]
    emulation = s.get("emulation")
    names = {
        "slow": "emulated slow machine (one core shared with a busy process"
        + (
            f", the study at nice {emulation['nice']}: {emulation['epoch_s']:.1f} "
            "s/epoch when calibrated"
            if emulation
            else ""
        )
        + f"; the slow one took {s['slow_machine_epoch_s']} s/epoch)",
        "whole": "this whole machine",
    }
    lines = []
    for mode in ("slow", "whole"):
        rows = s.get(mode)
        if not rows:
            continue
        lines.append(f"default study (make's tune), {names[mode]}:")
        for row in rows:
            gap = row["own_vs_start_points"]
            lines.append(
                f"  seed {row['seed']}: {row['epoch_s']} s/epoch of the 1024-512 FCN, trials "
                f"of {row['epochs']} epochs; {row['trials']} trials ({row['complete']} complete, "
                f"{row['pruned']} pruned, {row['tpe']} by TPE) in {row['wall_s']:.0f} s; "
                "sampler's best vs start points "
                + ("n/a" if gap is None else f"{gap:+.2f}")
                + " points; champion trial "
                + (
                    "none"
                    if row["champion_test"] is None
                    else f"{row['champion_trial']}, val {100 * row['champion_val']:.2f}%, test "
                    f"{100 * row['champion_test']:.2f}%"
                )
            )
        gaps = [
            row["own_vs_start_points"] for row in rows if row["own_vs_start_points"] is not None
        ]
        tests = [row["champion_test"] for row in rows if row["champion_test"] is not None]
        lines.append(
            f"  over {len(rows)} seeds: >= 12 trials in {sum(r['trials'] >= 12 for r in rows)}, "
            f"sampler reaches its start points in {sum(g >= 0 for g in gaps)} (mean "
            f"{sum(gaps) / max(len(gaps), 1):+.2f} points), champion test >= 90.0% in "
            f"{sum(t >= 0.90 for t in tests)} ("
            + ", ".join(f"{100 * t:.2f}" for t in tests)
            + f"); longest study {max(r['wall_s'] for r in rows):.0f} s"
        )
    return lines


def _serving(r: dict) -> list[str]:
    s = r["serving"]
    lines = [
        f"served model ({s['model']}, {s['epochs']} epochs) by `mlflow models serve` on "
        f"127.0.0.1, clients on the same machine, {s['seconds_per_cell']:g} s per line:"
    ]
    for batch, bare in s["bare"].items():
        lines.append(
            f"  {batch} image(s) per request: bare torch forward "
            f"{1e3 * bare['forward_s']:.2f} ms ({bare['forward_images_per_s']:.0f} "
            f"images/s), pyfunc predict in-process {1e3 * bare['pyfunc_s']:.2f} ms"
        )
        for c in (c for c in s["cells"] if str(c["images_per_request"]) == batch):
            errors = sum(c["errors"].values())
            latency = (
                "no answer"
                if c["p50_ms"] is None
                else f"p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms (p50 "
                f"{c['ratio_to_forward']:.1f}x the bare forward)"
            )
            lines.append(
                f"    {c['workers']} worker(s) x {c['threads']} threads, {c['clients']:>2} "
                f"clients: {c['requests_per_s']:.0f} requests/s, {c['images_per_s']:.0f} "
                f"images/s, {latency}, "
                + (f"{errors} errors {c['errors']}" if errors else "no errors")
            )
    return lines


SECTION_LINES = (
    ("cli", _cli),
    ("matmul", _matmul),
    ("fcn", _fcn),
    ("study_loop", _study_loop),
    ("study_cnn", _cnn("study_cnn", "study CNN")),
    ("fast_cnn", _cnn("fast_cnn", "fast CNN recipe")),
    ("recipes", _recipes),
    ("tracking", _tracking),
    ("tune", _tune),
    ("study", _study),
    ("serving", _serving),
    ("ray", ray_overhead.lines),
)
