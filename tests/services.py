"""Real services for the scale-out tests: a private PostgreSQL cluster and an MLflow server,
both secured as docs/scaling-out.md sets them up.

Both listen on 127.0.0.1 only, on free ports, keep their files in a temporary folder and stop
when the tests are done. PostgreSQL refuses to run as root, so as root (CI) its binaries run as
the `postgres` user that Debian's `postgresql` package creates. Every password is a fresh random
one, given through the environment or a file, never on a command line.
"""

from __future__ import annotations

import glob
import os
import secrets
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
    """A throw-away cluster, database `postgres`, user `tests` with a password: scram-sha-256
    over TCP, from 127.0.0.1 only (initdb's pg_hba.conf); the admin's Unix socket trusts.

    `url` holds no password, as users write it; clients get the password from `env()`
    (PGPASSWORD). `secret_url` holds it, for this process's own clients and for the tests of
    a URL with an inline password."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="pg-tests-"))
        self.as_postgres = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self.url = f"postgresql://tests@127.0.0.1:{self.port}/postgres"
        self.secret_url = f"postgresql://tests:{self.password}@127.0.0.1:{self.port}/postgres"
        pwfile = self.dir / "pwfile"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self.password + "\n")
        if self.as_postgres:
            shutil.chown(pwfile, "postgres")
        self.run(
            "initdb",
            "-D",
            self.data,
            "-U",
            "tests",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
        )
        pwfile.unlink()
        self.pg_ctl("start")

    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def run(self, tool: str, *args) -> None:
        out = subprocess.run(
            [*self.as_postgres, str(self.bin / tool), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode:
            raise RuntimeError(f"{tool} failed: {out.stdout}{out.stderr}")

    def pg_ctl(self, action: str, *args) -> None:
        self.run(
            "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.dir / "server.log",
            "-w",
            *args,
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
            action,
        )

    def restart(self) -> None:
        """Stop (closing every client's connection) and start again, as an admin would."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


AUTH_CONFIG = """[mlflow]
default_permission = READ
database_uri = sqlite:///{database}
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60
"""


class MlflowServer:
    """`mlflow server` with an SQLite backend store, proxied artifacts in `folder` and MLflow's
    basic-auth app as docs/scaling-out.md starts it: its configuration file in `folder`, the
    admin's password and the session secret in the environment (the admin user is made on the
    first start). `admin` are the admin's credentials, as MLflow's clients read them."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "mlflow-server.log", "w")
        self.admin = credentials("admin", secrets.token_urlsafe(18))
        config = folder / "basic_auth.ini"
        config.write_text(AUTH_CONFIG.format(database=folder / "basic_auth.db"))
        env = {
            **os.environ,
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin["MLFLOW_TRACKING_PASSWORD"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        mlflow = Path(sys.executable).parent / "mlflow"
        self.process = subprocess.Popen(
            [
                str(mlflow),
                "server",
                "--app-name",
                "basic-auth",
                "--backend-store-uri",
                f"sqlite:///{folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "2",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
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


def credentials(user: str, password: str) -> dict[str, str]:
    """A tracking server user as MLflow's clients read it: from the environment."""
    return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
