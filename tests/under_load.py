"""`python -m tests.under_load [ROUNDS] [PYTEST ARGS]`: the concurrency tests, several rounds, with
a CPU-bound process per core running beside them the whole time.

Races hide where workers, servers and signals meet; a loaded machine widens their windows. A
flaky test is a defect: every round must pass. Default: 3 rounds of the scale-out, Ray, workers,
champion, recovery, signal and served-model tests (`make test-load`).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

E2E = "tests/test_end_to_end.py::test_"
CONCURRENCY_TESTS = [
    "tests/test_scale_out.py",
    "tests/test_ray.py",
    "tests/test_champion.py",
    "tests/test_recovery.py",
    "tests/test_signals.py",
    "tests/test_process_tree.py",
    "tests/test_optuna_adapter.py",
    "tests/test_serving.py",
    f"{E2E}tune_stopped_with_two_workers_leaves_nothing_running",
    f"{E2E}replicate_stopped_mid_training_leaves_every_run_killed",
]


def burn() -> None:
    while True:
        sum(i * i for i in range(10_000))


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    tests = sys.argv[2:] or CONCURRENCY_TESTS
    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(os.cpu_count())]
    for b in burners:
        b.start()
    failed = 0
    try:
        for n in range(1, rounds + 1):
            t0 = time.monotonic()
            code = subprocess.call(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
            )
            print(
                f"round {n}/{rounds} under load: exit {code}, {time.monotonic() - t0:.0f} s",
                flush=True,
            )
            failed += code != 0
    finally:
        for b in burners:
            b.terminate()
    print(f"{rounds - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
