"""The speed benchmark: one run, one machine, every figure (`python -m bench --help`).

Measures, in this order: how long `python -m pipeline --help` and an argument error take; the
float32 matmul rate (the floor's reference); the base FCN for 50 epochs through our core, its
FLOPs and its ratio to the floor; the same through a faithful copy of the study's DataLoader
loop (bench/study_loop.py); the study's CNN for 10 epochs as the replication report trains it;
our fast CNN recipe and its time to 93.5% / 94.0% test accuracy; the CNN recipe held out and on
all 60,000 images and the FCN recipe that passes 90.5%, over 3 seeds (all these in
bench/measure.py); the cost of MLflow tracking and of an Optuna trial around the same training,
and tune's trials per hour with one 2-thread process vs two 1-thread processes on one storage
(bench/overhead.py); make's default study over 4 seeds on an emulated slow machine and on this
one (bench/default_study.py); and the base FCN served by `mlflow models serve` under 1, 4 and 16
concurrent clients (bench/overhead.py, bench/serve.py); tune's trials per hour with `--workers
2` and `--ray local --workers 2`, on short trials and on trials of a minute or more, and Ray's
start-up (bench/ray_overhead.py). It prints a table (bench/table.py) and writes every figure as
JSON. It asserts nothing: it is a tool, not a test.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from bench import measure, overhead, ray_overhead
from bench.default_study import default_study
from bench.table import table

SECTIONS = (
    "cli",
    "matmul",
    "fcn",
    "study_loop",
    "study_cnn",
    "fast_cnn",
    "recipes",
    "tracking",
    "tune",
    "study",
    "serving",
    "ray",
)
# Sections that start processes (tune's, the study's, a model server): their start-ups alone
# would take --quick past a minute, so --quick runs them only when --only names them.
STARTS_PROCESSES = ("tune", "study", "serving", "ray")

app = typer.Typer(add_completion=False)


@app.command()
def main(
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes: under a minute.")] = False,
    only: Annotated[
        str, typer.Option(help=f"Comma-separated sections ({', '.join(SECTIONS)}); empty: all.")
    ] = "",
    out: Annotated[Path, typer.Option(help="JSON file of every figure.")] = Path(
        "bench_results.json"
    ),
    data_dir: Annotated[Path, typer.Option(help="FashionMNIST folder, as for prepare.")] = Path(
        "data"
    ),
    tune_seconds: Annotated[float, typer.Option(help="Budget of each tune measurement.")] = 300,
    seeds: Annotated[
        str, typer.Option(help="Section study: the default study's seeds.")
    ] = "0,1,2,3",
    machines: Annotated[
        str,
        typer.Option(
            help="Section study: slow (emulated: one core shared with a busy process), whole, "
            "or both, comma-separated."
        ),
    ] = "slow,whole",
    serve_seconds: Annotated[
        float, typer.Option(help="Section serving: seconds of load per clients x batch size.")
    ] = 10,
    serve_workers: Annotated[
        str,
        typer.Option(help="Section serving: uvicorn worker counts to measure, comma-separated."),
    ] = "1,2",
) -> None:
    """Measure training speed against the machine's matmul floor and the study's loop."""
    sections = [s for s in only.split(",") if s] or list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise typer.BadParameter(
            f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}"
        )
    from pipeline.core import data as data_module

    data = data_module.load(data_dir)
    if quick:
        small = data_module.Split
        data = data_module.FashionMNIST(
            small(data.train.images[:5000], data.train.labels[:5000]),
            small(data.val.images[:2000], data.val.labels[:2000]),
            small(data.test.images[:2000], data.test.labels[:2000]),
            data.digest,
        )
    results: dict = {
        "machine": measure.machine(),
        "quick": quick,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if quick and not only:
        results["skipped"] = [f"{s} (--quick)" for s in STARTS_PROCESSES if s in sections]
        sections = [s for s in sections if s not in STARTS_PROCESSES]
    study_args = (
        tuple(int(s) for s in seeds.split(",") if s),
        tuple(m for m in machines.split(",") if m),
    )
    serve_args = (serve_seconds, tuple(int(w) for w in serve_workers.split(",") if w))
    with tempfile.TemporaryDirectory() as tmp_name:
        steps = plan(
            quick, data, data_dir, results, Path(tmp_name), tune_seconds, study_args, serve_args
        )
        for name in sections:
            t0 = time.perf_counter()
            results[name] = steps[name]()
            print(
                f"... {name} measured in {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            out.write_text(json.dumps(results, indent=1))  # a later failure keeps these
    print(table(results))
    print(f"(every figure in {out})")


def plan(
    quick: bool,
    data,
    data_dir: Path,
    results: dict,
    tmp: Path,
    tune_seconds: float,
    study_args: tuple,
    serve_args: tuple,
):
    """Each section's measurement at full or --quick size, to call in order. `study_args`:
    the study's seeds and machines; `serve_args`: serving's seconds per cell and worker
    counts (main's options)."""
    m = measure
    return {
        "cli": lambda: m.cli_latency(1 if quick else 3),
        "matmul": lambda: m.matmul_rate(1024 if quick else 2048, 1 if quick else 3),
        "fcn": lambda: m.fcn_core(
            data,
            2 if quick else 50,
            results.get("matmul", {}).get("gflops") or m.matmul_rate()["gflops"],
        ),
        "study_loop": lambda: m.study_loop(data_dir, 1 if quick else 50, 5000 if quick else None),
        # The study's CNN as the replication report trains it (recipe `study_cnn`), then our fast
        # recipe (`fast_cnn`) with its time-to-test-accuracy.
        "study_cnn": lambda: m.cnn(data, "study_cnn", 1 if quick else None),
        "fast_cnn": lambda: m.cnn(data, "fast_cnn", 1 if quick else None, (0.935, 0.94)),
        # Accuracy over 3 seeds: the fast CNN recipe held out and trained on all 60,000 images,
        # side by side, and the FCN recipe that passes 90.5%
        "recipes": lambda: m.recipes(data, (0, 1) if quick else (0, 1, 2), 1 if quick else None),
        # 50 epochs (the study's run length): long enough for MLflow's system-metrics sampler
        # (every 5 s) to take several samples in each run
        "tracking": lambda: overhead.tracking_overhead(data, 1 if quick else 50, tmp),
        "tune": lambda: overhead.trials_per_hour(data_dir, tune_seconds, 20, tmp),
        # the same study as 2 processes and as 2 Ray tasks; Ray's start-up (bench/ray_overhead.py)
        "ray": lambda: ray_overhead.measure(data_dir, tune_seconds, 20, tmp),
        # make's default study, 4 seeds on an emulated slow machine and on this one
        "study": lambda: default_study(data_dir, study_args[0], tmp, study_args[1]),
        # a briefly trained base FCN behind `mlflow models serve`; --quick: one worker, 1 s
        "serving": lambda: overhead.serving(
            data,
            tmp,
            1 if quick else 2,
            1 if quick else serve_args[0],
            (1,) if quick else serve_args[1],
        ),
    }


def entry() -> None:
    try:
        app(standalone_mode=False)
    except typer.TyperException as e:
        print(f"error: {e.format_message()}", file=sys.stderr)
        sys.exit(2)
