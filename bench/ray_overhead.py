"""What Ray costs a study (`python -m bench --only ray`): trials per hour of the same study with
`tune --workers 2` (two processes here) and `tune --ray local --workers 2` (two Ray tasks on a
cluster started for the call), side by side in one run, and Ray's start-up time.

Two studies, each run in both modes on a fresh SQLite storage and tracking store, seed 0:
- short trials: the default FCN study (its search space, `epochs` per trial, pruning) for
  `seconds`; most trials are pruned after an epoch or three, so Ray's fixed costs weigh most;
- trials of a minute or more: LONG_TRIALS trials of the wide FCN recipe, only its learning rate
  and dropout searched (every trial the same size), LONG_EPOCHS epochs each, no pruning.
A rate counts the trials that finished (complete or pruned) over the wall time of the whole
command, Ray's start and stop included: what a user waits for. Start-up: a fresh process's
`import ray`, `ray.init` of a local cluster and its first task's answer, then `ray.shutdown`.
Needs Ray (requirements-ray.txt); without it, says so.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTUP = """
import json, time
t0 = time.perf_counter()
import ray
ray.init(address="local", include_dashboard=False, configure_logging=False)
t1 = time.perf_counter()
ray.get(ray.remote(lambda: 1).remote())
t2 = time.perf_counter()
ray.shutdown()
t3 = time.perf_counter()
print(json.dumps({"init_s": t1 - t0, "first_task_s": t2 - t1, "shutdown_s": t3 - t2}))
"""
MODES = {"workers": ["--workers", "2"], "ray": ["--ray", "local", "--workers", "2"]}
# The long-trial study: the wide FCN recipe, two size-neutral parameters searched.
LONG_SPACE = """recipe: wide_fcn
lr: {type: float, low: 5.0e-4, high: 2.0e-3, log: true}
dropout: {type: float, low: 0.1, high: 0.4}
"""
LONG_TRIALS = 6  # three rounds of two workers
LONG_EPOCHS = 14  # median trials of 80-83 s on a 2-core EPYC (AVX-512, docs/ray.md)


def measure(data_dir: Path, seconds: float, epochs: int, tmp: Path) -> dict:
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"skipped": "Ray is not installed: pip install -r requirements-ray.txt"}
    out: dict = {"seconds": seconds, "epochs": epochs}
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "RAY_ADDRESS")}
    started = subprocess.run(
        [sys.executable, "-c", STARTUP], env=env, capture_output=True, text=True, check=True
    )
    out["startup"] = json.loads(started.stdout.strip().splitlines()[-1])
    space = tmp / "ray-long-trials.yaml"
    space.write_text(LONG_SPACE)
    studies = {
        "short": ["--epochs", str(epochs), "--n-trials", "0", "--timeout", str(seconds)],
        "long": [
            *("--space", str(space), "--epochs", str(LONG_EPOCHS), "--pruner", "none"),
            *("--total-trials", str(LONG_TRIALS), "--n-trials", "0", "--timeout", "0"),
        ],
    }
    out["long"] = {"trials": LONG_TRIALS, "epochs": LONG_EPOCHS}
    for study, study_args in studies.items():
        rates = {}
        for mode, args in MODES.items():
            rates[mode] = study_rate(f"{study}-{mode}", [*study_args, *args], data_dir, tmp, env)
        rates["ray_vs_workers"] = (
            rates["ray"]["trials_per_hour"] / rates["workers"]["trials_per_hour"]
        )
        out.setdefault(study, {}).update(rates)
    return out


def study_rate(name: str, args: list[str], data_dir: Path, tmp: Path, env: dict) -> dict:
    import optuna

    storage = f"sqlite:///{tmp / f'optuna-ray-{name}.db'}"
    t0 = time.perf_counter()
    subprocess.run(
        [
            *(sys.executable, "-m", "pipeline", "tune", "--storage", storage),
            *("--study-name", f"bench-{name}", "--data-dir", str(data_dir), *args),
        ],
        env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / f'mlflow-ray-{name}.db'}"},
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wall = time.perf_counter() - t0
    trials = optuna.load_study(study_name=f"bench-{name}", storage=storage).trials
    done = [t for t in trials if t.state.is_finished()]
    lengths = [t.duration.total_seconds() for t in done if t.duration is not None]
    return {
        "wall_s": wall,
        "trials": len(done),
        "trials_per_hour": 3600 * len(done) / wall,
        "median_trial_s": statistics.median(lengths) if lengths else None,
    }


def lines(r: dict) -> list[str]:
    """The section's lines in bench/table.py's summary."""
    t = r["ray"]
    if "skipped" in t:
        return [f"Ray: skipped ({t['skipped']})"]
    s = t["startup"]

    def pair(rates: dict) -> str:
        trial_s = "/".join(
            f"{rates[m]['median_trial_s']:.0f}" if rates[m].get("median_trial_s") else "-"
            for m in MODES
        )
        return (
            f"--workers 2 {rates['workers']['trials_per_hour']:.0f}, --ray local --workers 2 "
            f"{rates['ray']['trials_per_hour']:.0f} ({rates['ray_vs_workers']:.2f}x); median "
            f"trial {trial_s} s"
        )

    long = t["long"]
    return [
        f"tune trials/hour, short trials ({t['seconds']:.0f} s, {t['epochs']} epochs, pruned): "
        + pair(t["short"]),
        f"  trials of a minute or more ({long['trials']} trials, {long['epochs']} epochs, "
        "no pruning): " + pair(long),
        f"  Ray start-up: import and init {s['init_s']:.1f} s, first task "
        f"{s['first_task_s']:.1f} s, shutdown {s['shutdown_s']:.1f} s",
    ]
