"""The default study (`make`'s `tune`) on an emulated slow machine and on this whole machine.

Slow: each study pinned to one core beside a busy process pinned to the same core, so it gets
half a core and one torch thread; on a 2-core AVX-512 EPYC at ~200 GFLOP/s that makes the
1024-512 FCN's epoch (batch 256) take 11-12 s, where the slow 2-core EPYC (AVX2, ~125 GFLOP/s)
took 13.2 s with the machine to itself. The machine's cores each run one such pair, so the slow
studies of several seeds run at once. Whole: one study at a time, all cores, nothing else.

Each study is `python -m pipeline tune --seed S` with every other option at its default, in a
fresh folder (new SQLite stores), as `make` runs it. Per study: wall seconds, the seconds per
epoch and trial length `tune` printed, trials started / completed / pruned / chosen by TPE, the
sampler's own best against the best start point, and the champion's val and test accuracy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLOW_EPOCH_S = 13.2  # the slow machine's 1024-512 FCN epoch at batch 256, the trial alone


def on_core(cpu: int | None):
    """A preexec_fn pinning the child to `cpu` (None: no pinning)."""
    return None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))


def start_study(seed: int, folder: Path, data_dir: Path, cpu: int | None) -> subprocess.Popen:
    folder.mkdir(parents=True)
    env = dict(os.environ, MLFLOW_TRACKING_URI="sqlite:///mlflow.db",
               MLFLOW_EXPERIMENT_NAME="fashion-mnist", PYTHONPATH=str(ROOT))
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(name, None)
    if cpu is not None:
        env["OMP_NUM_THREADS"] = "1"
    out = open(folder / "tune.log", "w")
    return subprocess.Popen([sys.executable, "-m", "pipeline", "tune", "--seed", str(seed),
                             "--data-dir", str(data_dir.resolve())], cwd=folder, env=env,
                            stdout=out, stderr=subprocess.STDOUT, preexec_fn=on_core(cpu))


def read_study(folder: Path, wall_s: float, returncode: int) -> dict:
    """What the study did, from its log's lines and its Optuna storage."""
    import optuna

    from pipeline.core.training import TEST_ACC
    from pipeline.tuning.summary import best_of_each_kind, sampled_by

    log = (folder / "tune.log").read_text()
    line = re.search(r"~([\d.]+) s per epoch .* trials of (\d+) epochs", log)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="fcn", storage=f"sqlite:///{folder / 'optuna.db'}")
    states = [t.state.name for t in study.trials]
    start, own = best_of_each_kind(study)
    best = study.best_trial if "COMPLETE" in states else None
    return {
        "returncode": returncode, "wall_s": wall_s,
        "epoch_s": float(line[1]) if line else None, "epochs": int(line[2]) if line else None,
        "trials": len(states), "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"), "fail": states.count("FAIL"),
        "tpe": list(sampled_by(study).values()).count("tpe"),
        "start_best_val": start.value if start else None,
        "own_best_val": own.value if own else None,
        "own_vs_start_points": 100 * (own.value - start.value) if own and start else None,
        "champion_trial": best.number if best else None,
        "champion_val": best.value if best else None,
        "champion_test": best.user_attrs.get(TEST_ACC) if best else None,
        "notes": [ln for ln in log.splitlines() if ln.startswith("note: ")],
        "machine_line": line[0] if line else None,
        "last_lines": [ln for ln in log.splitlines() if not ln.startswith("[I ")][-8:],
    }


def busy(cpu: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"],
                            preexec_fn=on_core(cpu))


def run_slow(seeds: tuple[int, ...], data_dir: Path, tmp: Path) -> list[dict]:
    """The seeds' studies, each on one core beside a busy process; as many at once as cores."""
    cores = sorted(os.sched_getaffinity(0))
    out, pending = {}, list(seeds)
    while pending:
        batch, pending = pending[:len(cores)], pending[len(cores):]
        burners = [busy(cpu) for cpu in cores[:len(batch)]]
        try:
            t0 = time.perf_counter()
            running = {seed: start_study(seed, tmp / f"slow-{seed}", data_dir, cpu)
                       for seed, cpu in zip(batch, cores)}
            for seed, process in running.items():
                process.wait()
                out[seed] = read_study(tmp / f"slow-{seed}", time.perf_counter() - t0,
                                       process.returncode)
                report("slow", seed, out[seed])
        finally:
            for b in burners:
                b.kill()
                b.wait()
    return [{"seed": s, **out[s]} for s in seeds]


def run_whole(seeds: tuple[int, ...], data_dir: Path, tmp: Path) -> list[dict]:
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        process = start_study(seed, tmp / f"whole-{seed}", data_dir, None)
        process.wait()
        rows.append({"seed": seed, **read_study(tmp / f"whole-{seed}",
                                                time.perf_counter() - t0, process.returncode)})
        report("whole", seed, rows[-1])
    return rows


def report(mode: str, seed: int, row: dict) -> None:
    print(f"... default study, {mode} machine, seed {seed}: {row['trials']} trials in "
          f"{row['wall_s']:.0f} s, champion test {row['champion_test']}", file=sys.stderr,
          flush=True)


def default_study(data_dir: Path, seeds: tuple[int, ...], tmp: Path,
                  modes: tuple[str, ...] = ("slow", "whole")) -> dict:
    """Both machines' studies of `seeds`, and a summary of each (see bench/table.py)."""
    run = {"slow": run_slow, "whole": run_whole}
    out: dict = {"seeds": list(seeds), "slow_machine_epoch_s": SLOW_EPOCH_S}
    for mode in modes:
        out[mode] = run[mode](seeds, data_dir, tmp)
    return out
