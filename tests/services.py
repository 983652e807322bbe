"""Real services for the scale-out tests: a private PostgreSQL cluster and an MLflow server.

Both listen on 127.0.0.1 only, on free ports, keep their files in a temporary folder and stop
when the tests are done. PostgreSQL refuses to run as root, so as root (CI) its binaries run as
the `postgres` user that Debian's `postgresql` package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL binaries (/usr/lib/postgresql/VERSION/bin), the newest; or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.2)


class Postgres:
    """A throw-away cluster: trust authentication for user `tests`, database `postgres`."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="pg-tests-"))
        self.as_postgres = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://tests@127.0.0.1:{self.port}/postgres"
        self.run("initdb", "-D", self.data, "-U", "tests", "--auth=trust", "-E", "UTF8")
        self.pg_ctl("start")

    def run(self, tool: str, *args) -> None:
        out = subprocess.run([*self.as_postgres, str(self.bin / tool), *map(str, args)],
                             capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise RuntimeError(f"{tool} failed: {out.stdout}{out.stderr}")

    def pg_ctl(self, action: str, *args) -> None:
        self.run("pg_ctl", "-D", self.data, "-l", self.dir / "server.log", "-w", *args,
                 "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", action)

    def restart(self) -> None:
        """Stop (closing every client's connection) and start again, as an admin would."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class MlflowServer:
    """`mlflow server` with an SQLite backend store and proxied artifacts in `folder`."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "mlflow-server.log", "w")
        mlflow = Path(sys.executable).parent / "mlflow"
        self.process = subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "2"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self.healthy, f"mlflow server on {self.url} (log: {self.log.name})")

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"mlflow server exited; see {self.log.name}")
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
