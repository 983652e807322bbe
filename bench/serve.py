"""A served model under load: `mlflow models serve` of a logged model on 127.0.0.1, driven by
client threads for a bounded time; the benchmark's serving section and tests/test_serving.py
use it.

`served(uri, env, log)` starts the server on a free port, waits until /ping answers and always
stops its whole process group. `requests_for(module, images, batch, count)` builds request
bodies with the answer each must get (the bare module's classes); `drive(port, requests,
clients, seconds)` sends them from `clients` threads, each on its own keep-alive connection,
and counts as an error every answer that is not HTTP 200, strict JSON and exactly those
classes.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

BIN = Path(sys.executable).parent  # mlflow, and the uvicorn it starts from PATH
REQUEST_TIMEOUT_S = 120  # one request, even on a loaded machine
START_TIMEOUT_S = 180  # the server's start: imports and loading the model
# An image whose top two probabilities are closer than this could flip class between two
# forwards that sum in another order (threads, batch): never used as an expected answer.
CLEAR_MARGIN = 1e-3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(
    model_uri: str, env: dict[str, str], log: Path, workers: int = 1, threads: int | None = None
) -> Iterator[int]:
    """`mlflow models serve` of `model_uri` on 127.0.0.1 with `workers` uvicorn workers (each
    with `threads` torch threads; None: torch's default); yields its port once /ping answers.
    It runs in `log`'s folder. A port taken between choosing and binding it: another port, up
    to 3 tries."""
    env = {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    for attempt in range(3):
        port = free_port()
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    model_uri,
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "--workers",
                    str(workers),
                ],
                env=env,
                cwd=log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            if wait_ready(port, proc):
                yield port
                return
            if "address already in use" not in log.read_text().lower() or attempt == 2:
                raise RuntimeError(
                    f"mlflow models serve exited with {proc.returncode}: {log.read_text()[-3000:]}"
                )
        finally:
            stop(proc)


def wait_ready(port: int, proc: subprocess.Popen) -> bool:
    """True once /ping answers 200; False if the server exited first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)  # never a proxy
        try:
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return True
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        try:  # returns at once if the server died; otherwise the pause between tries
            proc.wait(timeout=0.3)
            return False
        except subprocess.TimeoutExpired:
            pass
    raise TimeoutError(f"mlflow models serve did not answer /ping in {START_TIMEOUT_S} s")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (mlflow, the uvicorn it starts, uvicorn's
    workers); SIGKILL to whatever of it still runs 30 s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            proc.poll()  # reaps mlflow, our child
            if not running_in_group(proc.pid):
                return
            time.sleep(0.1)


def running_in_group(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies, which only wait for their parent
    to reap them, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (name) state ppid pgrp ...": the name may hold spaces, so split after ")"
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):  # it ended meanwhile
            continue
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


@dataclass(frozen=True)
class Request:
    body: bytes  # {"inputs": pixels} as JSON
    classes: tuple[int, ...]  # the answer it must get, one class per image
    pixels: torch.Tensor  # the same images as a float32 tensor, for the bare forward


def requests_for(module, images, batch: int, count: int) -> list[Request]:
    """`count` requests of `batch` images each (raw pixels as JSON numbers, as a user sends
    them), from images the bare `module` classifies with a clear margin, and their classes."""
    import torch

    with torch.inference_mode():
        probs = module(torch.as_tensor(images).float()).softmax(1)
    top2 = probs.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1] > CLEAR_MARGIN).nonzero().flatten()
    if len(clear) < batch * count:
        raise ValueError(f"{len(clear)} clearly classified images; {batch * count} needed")
    out = []
    for k in range(count):
        index = clear[k * batch : (k + 1) * batch]
        out.append(
            Request(
                json.dumps({"inputs": images[index].tolist()}).encode(),
                tuple(probs[index].argmax(1).tolist()),
                images[index].float(),
            )
        )
    return out


@dataclass
class Load:
    """What `drive` saw: the answered requests' latencies, errors by kind, answers per client."""

    clients: int
    images_per_request: int
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    per_client: list[int] = field(default_factory=list)

    def figures(self) -> dict:
        """The answered requests' rate and latency percentiles (None when none was answered:
        JSON has no NaN), and the errors by kind."""
        n = len(self.latencies_s)

        def ms(q: float) -> float | None:
            return 1e3 * float(np.percentile(self.latencies_s, q)) if n else None

        return {
            "clients": self.clients,
            "images_per_request": self.images_per_request,
            "wall_s": self.wall_s,
            "requests": n,
            "requests_per_s": n / self.wall_s,
            "images_per_s": n * self.images_per_request / self.wall_s,
            "p50_ms": ms(50),
            "p99_ms": ms(99),
            "errors": dict(self.errors),
        }


def drive(port: int, requests: list[Request], clients: int, seconds: float) -> Load:
    """`clients` threads post `requests` (client i starts at the i-th, then every
    `clients`-th, round and round) until `seconds` have passed; each sends at least one, and
    a request in flight at the end is still answered and counted."""
    sizes = {len(r.classes) for r in requests}
    load = Load(clients, sizes.pop() if len(sizes) == 1 else 0, per_client=[0] * clients)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        k = i
        try:
            while k == i or time.monotonic() < deadline:
                request = requests[k % len(requests)]
                k += clients
                error: str | None  # the exception's name, or what was wrong in the answer
                t0 = time.perf_counter()
                try:
                    conn.request(
                        "POST", "/invocations", request.body, {"Content-Type": "application/json"}
                    )
                    response = conn.getresponse()
                    status, body = response.status, response.read()
                except (OSError, http.client.HTTPException) as e:
                    conn.close()  # the next request opens a new connection
                    error, latency = type(e).__name__, None
                else:
                    latency = time.perf_counter() - t0
                    error = wrong_answer(status, body, request.classes)
                with lock:
                    if error:
                        load.errors[error] += 1
                    elif latency is not None:
                        load.latencies_s.append(latency)
                        load.per_client[i] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load.wall_s = time.perf_counter() - t0
    return load


def strict_json(body: bytes):
    """JSON as the standard says it: bare NaN or Infinity tokens are an error."""

    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")

    return json.loads(body, parse_constant=refuse)


def wrong_answer(status: int, body: bytes, classes: tuple[int, ...]) -> str | None:
    """None for an answer of HTTP 200, strict JSON and exactly `classes`; else the kind of
    error."""
    if status != 200:
        return f"HTTP {status}"
    try:
        rows = strict_json(body)["predictions"]
        answered = tuple(row["class_index"] for row in rows)
    except (ValueError, KeyError, TypeError):
        return "malformed answer"
    return None if answered == classes else "wrong classes"
