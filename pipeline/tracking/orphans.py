"""Runs whose process died without a word (kill -9, OOM, power loss) are closed KILLED.

Every tracked run records its owner: host name, pid and the process's start time (so a pid
reused by a later process is not taken for the owner). The next command that opens the same
store on the same host looks for RUNNING runs of this host whose owner is gone and ends them
KILLED with an `end_reason`. Runs of other hosts are left alone: from here nobody can tell a
live process on another machine from a dead one (tune trials there are covered by Optuna's
heartbeats; see docs/scaling-out.md).
"""

from __future__ import annotations

import socket
import sys

import mlflow
import psutil

from pipeline.core.errors import first_line
from pipeline.tracking.tags import END_REASON, set_tags

HOST_TAG, PID_TAG, START_TAG = "owner_host", "owner_pid", "owner_start"


def process_start(pid: int) -> str:
    """The process's start time in seconds since boot, '' where unknown. psutil gives it since
    the epoch, through the boot time; less that boot time, a step of the system clock (NTP),
    which moves both, cannot make a live owner look like another process."""
    try:
        return f"{psutil.Process(pid).create_time() - psutil.boot_time():.2f}"
    except psutil.Error:
        return ""


def alive(pid: int, start: str) -> bool:
    """Is process `pid` (started at `start`, '' when unknown) still running on this host?"""
    if not psutil.pid_exists(pid):
        return False
    return not start or process_start(pid) in ("", start)


def dead_owner(run) -> bool:
    tags = run.data.tags
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    return not alive(int(tags[PID_TAG]), tags.get(START_TAG, ""))


def close_orphans() -> list[str]:
    """End KILLED every RUNNING run of this host whose owning process is gone; their ids."""
    client = mlflow.MlflowClient()
    try:
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string=f"attributes.status = 'RUNNING' and tags.{HOST_TAG} = "
            f"'{socket.gethostname()}'",
            max_results=1000,
        )
    except mlflow.exceptions.MlflowException:
        return []  # a store we cannot search is reported by the command's own first write
    closed = []
    for run in runs:
        if not dead_owner(run):
            continue
        pid = run.data.tags[PID_TAG]
        # Several commands starting together (tune workers) close the same orphans: set_tags
        # retries the writer that loses the race for the tag; KILLED is KILLED either way.
        try:
            set_tags(
                run.info.run_id,
                {
                    END_REASON: (
                        f"its process {pid} on {socket.gethostname()} ended without closing it "
                        "(killed, out of memory or power loss); closed by a later command"
                    )
                },
                client,
            )
            client.set_terminated(run.info.run_id, "KILLED")
        except mlflow.exceptions.MlflowException as e:
            print(
                f"warning: could not close MLflow run {run.info.run_id} left RUNNING by dead "
                f"process {pid}: {first_line(e)}",
                file=sys.stderr,
            )
            continue
        closed.append(run.info.run_id)
    if closed:
        print(
            f"note: closed {len(closed)} MLflow run(s) left RUNNING by a dead process as KILLED",
            file=sys.stderr,
        )
    return closed
