"""`tune --ray ADDRESS --workers N`: the N workers of one study as Ray tasks on a Ray cluster.

The driver (the `tune` process) creates or loads the study and the parent run, then `RayTasks`
submits N tasks, each running the worker loop of a `tune --workers` helper in a Ray worker
process (the function the command passes in: trials one at a time, each a child run under the
driver's parent, heartbeats, retries of dead trials, `--total-trials` exact). The driver runs no
trial; it waits, then logs the study's summary and registers the champion once.

- A task whose worker process or node dies runs again (at most MAX_TASK_RETRIES times, Ray's
  `max_retries`); its trial, silent, is failed and retried by the heartbeats
  (tuning/workers/recovery.py), at once where the new process runs on the same host.
- Ctrl-C / SIGTERM on the driver cancels the tasks: Ray raises KeyboardInterrupt in each (it
  calls the process's SIGINT handler, our tuning/core interrupt one), whose trial ends FAIL and
  whose runs end KILLED; a task still running after STOP_GRACE_S is killed.
- Secrets never travel through Ray. Its dashboard and state API show a task's runtime
  environment, env_vars included, and it logs them (ray-project/ray#39502). So the runtime
  environment carries the project's code (working_dir) and the tracking URI, which holds no
  password (tracking/store.py); the task arguments carry the options, the storage URL without its
  password. The passwords come from each node's own environment (the one `ray start` ran in)
  or files (~/.pgpass, ~/.mlflow/credentials), as for hand-started workers. A cluster started
  here (`local`) inherits this process's environment, an inline storage password included.

Ray is imported here only, and only with --ray: `tune --help` stays instant without it.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.core import interrupt
from pipeline.core.credentials import password, without_password
from pipeline.core.errors import UserError, first_line
from pipeline.tracking.store import DEFAULT_TRACKING_URI
from pipeline.tuning.tune_settings import TuneOptions
from pipeline.tuning.workers.processes import PASSWORD_VARIABLE

MAX_TASK_RETRIES = 2  # a task whose process or node died runs again, at most this often
STOP_GRACE_S = 30  # after a cancel, seconds a task has to close its trial and runs
PROJECT = Path(__file__).resolve().parents[3]  # the code the tasks run (runtime_env working_dir)
# Not the code: data, stores and outputs stay on the driver's machine.
NOT_SHIPPED = [".venv", "data", "mlruns", "mlartifacts", "test-artifacts", "*.db"]
LOOPBACK = ("localhost", "127.", "::1")


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(
            "--ray needs Ray, which is not installed here: pip install -r requirements-ray.txt "
            "(or pip install '.[ray]')"
        ) from None
    return ray


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster of this call: its nodes' hosts (alive when connected), CPUs and GPUs."""

    address: str
    hosts: tuple[str, ...]
    cpus: float  # all nodes'
    node_cpus: float  # the largest node's: more than this, no task could ever start
    gpus: float

    @property
    def local(self) -> bool:
        """Every node is this machine: files here (SQLite, a journal) are shared by all."""
        return self.address == "local" or set(self.hosts) <= {socket.gethostname()}

    def tasks(self, run: Callable, workers: list[TuneOptions], space_text: str) -> RayTasks:
        """One task per worker, each asking its share of the cluster's CPUs (and of its GPUs,
        which a trial uses whenever its node has one)."""
        n = len(workers)
        cpus = int(max(1, min(self.node_cpus, self.cpus // n)))
        gpus = min(1.0, self.gpus / n) if self.gpus else 0
        return RayTasks(run, workers, space_text, cpus, gpus)


def here(opts: TuneOptions) -> TuneOptions:
    """`tune --ray`'s options with this folder's relative paths made absolute, for the driver
    and its tasks alike (the study's runs are tagged with its storage): a task runs in its own
    folder (its copy of the working_dir)."""
    return replace(opts, storage=absolute(opts.storage), data_dir=opts.data_dir.resolve())


def absolute(url: str) -> str:
    """An SQLite URL, a `file:` URI or a file path relative to this folder, made absolute."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(url.removeprefix("sqlite:///")).resolve())
    if url.startswith("file:") and not url.startswith("file:/"):
        return Path(url.removeprefix("file:")).resolve().as_uri()
    return url if "://" in url else str(Path(url).resolve())


def tracking_uri() -> str:
    return absolute(os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)


@contextmanager
def cluster(address: str, storage: str) -> Iterator[Cluster]:
    """Join the cluster at `address` (auto, HOST:PORT) or start one here (local) for this
    call; refuse, before anything is written, what its workers could not reach; leave it at
    the end (a local one stops)."""
    ray = import_ray()
    if address not in ("auto", "local"):
        reachable(address)
    secret = password(storage)
    if secret and address == "local":  # the local cluster's processes inherit it, as helpers do
        os.environ[PASSWORD_VARIABLE] = secret
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        ray.init(
            address=address,  # "local": a new cluster, even where RAY_ADDRESS names one
            include_dashboard=False if address == "local" else None,
            configure_logging=False,
            # the code the tasks run: this project, uploaded (Ray takes folders per job only)
            runtime_env={"working_dir": str(PROJECT), "excludes": NOT_SHIPPED},
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(
            f"ray: cannot join the Ray cluster at {address} ({first_line(e)}); start one "
            "with `ray start --head` (docs/ray.md), or use --ray local"
        ) from None
    finally:
        os.environ.pop(PASSWORD_VARIABLE, None)
        for sig, handler in handlers.items():  # ray.init sets its own SIGTERM: ours ends runs
            signal.signal(sig, handler)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        found = Cluster(
            address,
            tuple(n["NodeManagerHostname"] for n in nodes),
            sum(n["Resources"].get("CPU", 0) for n in nodes),
            max((n["Resources"].get("CPU", 0) for n in nodes), default=0),
            sum(n["Resources"].get("GPU", 0) for n in nodes),
        )
        refuse_unshared(found, storage, tracking_uri())
        yield found
    finally:
        ray.shutdown()


def reachable(address: str) -> None:
    """One line within seconds for a head that does not answer (ray.init waits a minute)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(
            f"ray: nothing answers at {address} ({e.strerror or type(e).__name__}); start the "
            "head there with `ray start --head` (docs/ray.md), or use --ray local"
        ) from None


def refuse_unshared(found: Cluster, storage: str, tracking: str) -> None:
    """With nodes on other machines: no storage or tracking store that lives on this machine
    only, and no storage password that would have to travel through Ray."""
    if found.local:
        return
    nodes = f"the Ray workers on {', '.join(sorted(set(found.hosts))) or 'no node yet'}"
    shown = without_password(storage)
    if password(storage):
        raise UserError(
            f"storage {shown}: its password would reach {nodes} only through Ray, which "
            "shows task arguments and runtime environments in its dashboard: leave it out "
            "of the URL and give it to each node (PGPASSWORD where `ray start` runs, or "
            "~/.pgpass; docs/ray.md)"
        )
    if "://" not in storage or storage.startswith("sqlite") or on_loopback(storage):
        raise UserError(
            f"storage {shown}: on this machine only, which {nodes} cannot share; use a "
            "database server they reach (postgresql://USER@HOST/DB, docs/scaling-out.md), "
            "or --ray local"
        )
    if not tracking.startswith(("http://", "https://")) or on_loopback(tracking):
        raise UserError(
            f"MLFLOW_TRACKING_URI {tracking}: a tracking store on this machine only, which "
            f"{nodes} cannot reach; use an MLflow tracking server they reach "
            "(docs/scaling-out.md), or --ray local"
        )


def on_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "").startswith(LOOPBACK)


class RayTasks:
    """The tasks of one `tune --ray` call, in the shape of `processes.Helpers`: `running(parent)`
    submits them (and cancels them on an exception), `wait()` blocks until all have ended."""

    main_trains = False  # the driver runs no trial: every worker is a task

    def __init__(
        self, run: Callable, workers: list[TuneOptions], space_text: str, cpus: int, gpus: float
    ):
        self.run, self.workers, self.space_text = run, workers, space_text
        self.cpus, self.gpus = cpus, gpus
        self.refs: list = []

    @contextmanager
    def running(self, parent_run_id: str) -> Iterator[RayTasks]:
        import mlflow

        ray = import_ray()
        experiment = mlflow.MlflowClient().get_experiment(
            mlflow.MlflowClient().get_run(parent_run_id).info.experiment_id
        )
        where = {  # the driver's store and experiment, whatever the nodes' environment says
            "MLFLOW_TRACKING_URI": tracking_uri(),
            "MLFLOW_EXPERIMENT_ID": experiment.experiment_id,
            "MLFLOW_EXPERIMENT_NAME": experiment.name,
        }
        task = ray.remote(
            name="tune-worker",
            num_cpus=self.cpus,
            num_gpus=self.gpus,
            max_retries=MAX_TASK_RETRIES,  # the process or node died; not our own errors
            retry_exceptions=False,
            max_calls=1,  # a fresh process per task: its environment and memory its own
            runtime_env={"env_vars": where},
        )(self.run)
        self.refs = [
            task.remote(replace(w, helper_of=parent_run_id), self.space_text, self.cpus)
            for w in self.workers
        ]
        try:
            yield self
        except BaseException:
            self.stop()
            raise

    def wait(self) -> None:
        """Block until every task has ended, a stop request raising at once; one line for a
        task that failed (the others are then cancelled by `running`)."""
        ray = import_ray()
        pending = list(self.refs)
        while pending:
            interrupt.check()
            done, pending = ray.wait(pending, timeout=0.5)
            for ref in done:
                try:
                    ray.get(ref)
                except Exception as e:
                    cause = getattr(e, "cause", None) or e
                    why = str(cause) if isinstance(cause, UserError) else first_line(cause)
                    raise UserError(
                        f"a Ray worker failed ({why}); completed trials are kept: run the "
                        "same command again to resume"
                    ) from None

    def stop(self) -> None:
        """Cancel every task (a KeyboardInterrupt in each: its trial FAIL, its runs KILLED);
        one still running after STOP_GRACE_S is killed, and the heartbeats retry its trial."""
        ray = import_ray()
        for ref in self.refs:
            ray.cancel(ref)
        _, left = ray.wait(self.refs, num_returns=len(self.refs), timeout=STOP_GRACE_S)
        for ref in left:
            print(
                f"warning: a Ray worker did not stop within {STOP_GRACE_S} s: killed",
                file=sys.stderr,
            )
            ray.cancel(ref, force=True)
