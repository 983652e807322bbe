"""`tune --workers N`: N-1 more `tune` processes on this machine, on the same study.

They are started after this process has created the study and the MLflow experiment (no
creation race), each with its share of the threads, in their own session: a Ctrl-C or a closed
terminal reaches this process only, which stops them with SIGTERM (their running trials end
FAIL, their runs KILLED). When this process dies without a word (kill -9, the OOM killer), Linux
sends each helper SIGTERM (PR_SET_PDEATHSIG, core/interrupt.py `follow_parent`), with the same
end. The kernel's notice was chosen over a pipe whose end-of-file would tell them (a thread in
each helper, and an end that every other child of ours must not inherit, or the EOF never comes)
and over a watch of the parent's pid (a poll: late by its interval).
A helper logs no study summary and registers nothing; the main worker does once all have ended.
Their command lines, which `ps` shows to every user of the machine, name the storage without its
password; a password typed in the main worker's URL reaches them in their environment.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.core import interrupt, options
from pipeline.core.credentials import with_password, without_password
from pipeline.core.errors import UserError
from pipeline.tuning.tune_settings import TuneOptions, TuneSettings, shares

# The main worker's storage password, for its helpers only (an environment is private to its
# process and user; a command line is not).
PASSWORD_VARIABLE = "PIPELINE_HELPER_STORAGE_PASSWORD"


def worker_options(opts: TuneOptions, settings: TuneSettings) -> list[TuneOptions]:
    """This call's workers, one options each: its share of n_trials and the resolved space,
    epochs and study name. The storage goes without its password, which `ps` would show to
    every user: the helpers get it from their environment (`helper_storage`; Ray tasks:
    tuning/workers/ray_tasks.py)."""
    resolved = dataclasses.replace(
        opts,
        space=str(settings.space.path),
        epochs=settings.epochs,
        study_name=settings.study_name,
        storage=without_password(opts.storage),
        workers=1,
        ray="",
        helper_of="",
    )
    return [dataclasses.replace(resolved, n_trials=n) for n in shares(opts.n_trials, opts.workers)]


def helper_argv(opts: TuneOptions, settings: TuneSettings) -> list[list[str]]:
    """The `tune` arguments of this call's helper workers (all but the first worker, which
    is this process)."""
    return [options.to_argv(worker) for worker in worker_options(opts, settings)[1:]]


class Helpers:
    """The helpers of one `tune` call: `commands` are their `tune` arguments; each trains with
    `threads` threads and nests its trials under the main worker's parent run. `password`: the
    storage's, when the main worker's URL held one (the commands' URL does not)."""

    main_trains = True  # the main worker runs trials beside them

    def __init__(self, commands: list[list[str]], threads: int, password: str | None = None):
        self.commands, self.threads, self.password = commands, threads, password
        self.procs: list[subprocess.Popen] = []

    @contextmanager
    def running(self, parent_run_id: str) -> Iterator[Helpers]:
        """The helpers run inside; on an exception (Ctrl-C included) they are stopped."""
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        env.pop("MLFLOW_RUN_ID", None)  # `mlflow run`'s run belongs to the main worker
        env[interrupt.PARENT_VARIABLE] = str(os.getpid())  # they end when this process dies
        if self.password:
            env[PASSWORD_VARIABLE] = self.password
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "pipeline", "tune", *args, "--helper-of", parent_run_id],
                env=env,
                start_new_session=True,
            )
            for args in self.commands
        ]
        try:
            yield self
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 60) -> None:
        """SIGTERM each helper still running (its trial ends FAIL, its runs KILLED); one that
        has not ended after `grace` seconds is killed, and the next command on this host closes
        its runs (tracking/orphans.py) and retries its trial (tuning/workers/recovery.py)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                print(
                    f"warning: helper worker {proc.pid} did not stop within {grace:g} s "
                    "after SIGTERM: killed",
                    file=sys.stderr,
                )
                proc.kill()
                proc.wait()

    def wait(self) -> None:
        """Block until every helper has ended; one line if any failed."""
        codes = [proc.wait() for proc in self.procs]
        failed = [code for code in codes if code != 0]
        if failed:
            raise UserError(
                f"{len(failed)} of {len(codes)} helper workers failed ({ended(failed[0])}); "
                "completed trials are kept: run the same command again to resume"
            )


def ended(code: int) -> str:
    """How a helper ended, from its exit code."""
    if code == -signal.SIGKILL:
        return "killed by SIGKILL: kill -9 or the OOM killer"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    if code == 130:
        return "stopped by a signal"
    return f"exit {code}; their error is above"


def helper_storage(url: str) -> str:
    """A helper's storage: its URL with the main worker's password put back, when there is
    one (taken out of the environment, so that nothing this helper starts inherits it)."""
    secret = os.environ.pop(PASSWORD_VARIABLE, None)
    return with_password(url, secret) if secret else url
