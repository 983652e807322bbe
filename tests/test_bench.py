"""The benchmark runs end to end in --quick mode and writes every figure it prints (no timing
is asserted: speed lives in the benchmark's output, not in tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_bench_quick_writes_its_figures(tmp_path, data_dir):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "matmul,fcn,study_loop,recipes",
            "--out",
            str(out),
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["quick"] is True and results["machine"]["cores"] >= 1
    assert results["matmul"]["gflops"] > 0
    fcn = results["fcn"]
    # 5,000 images -> 9 batches of 512; the pixels get no gradient, so the first layer's
    # 784 x 300 input-gradient product is not counted
    assert fcn["gflop_per_epoch"] == pytest.approx(
        (2 * (3 * 297_200 - 784 * 300) * 4608 + 2 * 297_200 * 4000) / 1e9
    )
    assert fcn["ratio_to_floor"] == pytest.approx(fcn["wall_s"] / fcn["floor_s"])
    # the same epoch's matmuls alone, timed at the batch's shapes: the tighter floor
    assert fcn["gemm_epoch_s"] > 0
    assert fcn["gemm_gflops"] == pytest.approx(fcn["gflop_per_epoch"] / fcn["gemm_epoch_s"])
    assert fcn["ratio_to_gemm_floor"] == pytest.approx(fcn["wall_s"] / (2 * fcn["gemm_epoch_s"]))
    assert 0 < results["study_loop"]["test_acc"] <= 1
    assert "base FCN, our core" in proc.stdout and "study's loop" in proc.stdout
    assert "its matmuls alone, at the batch's shapes" in proc.stdout
    # the per-step cost that does not scale with the widths: a 784-8-10 net's epoch
    assert 0 < fcn["narrow_epoch_s"] and "a 784-8-10 FCN's epoch" in proc.stdout
    # the recipes over seeds (2 in --quick): each seed's run, and their mean and spread
    for name in ("fast_cnn", "fast_cnn_all", "wide_fcn"):
        recipe = results["recipes"][name]
        accs = [run["test_acc"] for run in recipe["runs"]]
        assert [run["seed"] for run in recipe["runs"]] == [0, 1]
        assert recipe["test_acc_mean"] == pytest.approx(sum(accs) / 2)
        assert recipe["test_acc_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
    assert results["recipes"]["fast_cnn"]["config"]["holdout"] == "true"
    assert results["recipes"]["fast_cnn_all"]["config"]["holdout"] == "false"
    # trained on all 60,000: no val split, so no val figure rather than a made-up one
    assert [run["val_acc"] for run in results["recipes"]["fast_cnn_all"]["runs"]] == [None, None]
    assert "val_acc_mean" not in results["recipes"]["fast_cnn_all"]
    assert (
        "fast CNN recipe (50,000 images, 10,000 held out), 1 epochs, 2 seeds: test" in proc.stdout
    )
    assert (
        "fast CNN recipe on all 60,000 (--holdout false), 1 epochs, 2 seeds: test" in proc.stdout
        and "no val split" in proc.stdout
    )


def test_bench_rejects_an_unknown_section():
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "gpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "unknown sections" in proc.stderr


@pytest.mark.parametrize(
    "measured, level",
    [
        ({0: 6.0, 3: 10.0, 5: 12.5, 6: 15.0}, 5),  # 12.5 s is 5% under 13.2 s, 15 s 14% over
        ({0: 6.0, 3: 11.0, 4: 14.0}, 4),  # 14 s is 6% over, 11 s 17% under
        ({0: 14.5}, 0),  # the only level measured
        # in seconds 12.0 is nearer (1.2 against 1.3), in ratio 14.5 (13.2 / 12.0 = 1.100,
        # 14.5 / 13.2 = 1.098)
        ({0: 12.0, 1: 14.5}, 1),
    ],
)
def test_the_slow_emulation_takes_the_level_nearest_in_ratio(measured, level):
    from bench.default_study import SLOW_EPOCH_S, nearest

    assert nearest(measured, SLOW_EPOCH_S) == level


def command_lines() -> list[str]:
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # the process ended meanwhile
            pass
    return lines


def test_bench_quick_serving_drives_the_served_model_and_stops_it(tmp_path, data_dir):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "serving",
            "--out",
            str(out),
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    serving = json.loads(out.read_text())["serving"]
    cells = serving["cells"]
    assert sorted((c["images_per_request"], c["clients"]) for c in cells) == [
        (b, c) for b in (1, 64) for c in (1, 4, 16)
    ]
    for cell in cells:
        # every answer HTTP 200, strict JSON and the bare model's classes; each client sent one
        assert cell["errors"] == {} and cell["requests"] >= cell["clients"], cell
        assert cell["images_per_s"] == pytest.approx(
            cell["requests_per_s"] * cell["images_per_request"]
        )
        assert cell["p50_ms"] <= cell["p99_ms"]
        forward = serving["bare"][str(cell["images_per_request"])]["forward_s"]
        assert cell["ratio_to_forward"] == pytest.approx(cell["p50_ms"] / (1e3 * forward))
    assert "served model (FCN 784-300-200-10" in proc.stdout
    assert "1 worker(s) x" in proc.stdout and "16 clients:" in proc.stdout
    # the server's process group ended with the benchmark
    model_id = serving["model_uri"].removeprefix("models:/")
    assert not [line for line in command_lines() if model_id in line]
