"""`livelambda dev APP --cloud` as a real subprocess, on a temp copy of examples/hello.

    with running_dev(tmp_path) as dev:          # waits for its --ready-file; stops it (SIGINT) after
        response, payload = dev.invoke("hello", {"name": "Ada"})   # boto3 -> cloud -> stub -> dev server
        dev.write_hello("v2")                   # hello.py from the HELLO template (hot reload)
        dev.dashboard_url                       # "http://127.0.0.1:PORT/"
        dev.cloud_faults(drop_connections=True) # POST /_livelambda/faults on the cloud's port
        dev.wait_for(lambda: ..., "what")       # poll a predicate; fails with the dev server's output

`running_dev(tmp_path, hello=None, prepare=None)` leaves examples/hello's own hello.py when `hello` is
None, else writes that source; `prepare(app_dir)` runs on the copy before the process starts (a venv,
a changed livelambda.toml...); `log=PATH` sends its output there (default: tmp_path / "dev.log", outside
the app). On exit it stops the process with SIGINT (Ctrl+C) and checks that every
process it had started (the cloud, its sandboxes, forkservers, workers) is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devserver.processes import stop_process
from tests.lambda_fixtures import lambda_client, wait_until

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0  # generous: two shared cores, maybe busy with other test processes

HELLO = """
import time

VERSION = "{version}"


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    print("running version", VERSION)
    return {{"version": VERSION, "message": "Hello, " + event.get("name", "world") + "!"}}
"""


@dataclass
class DevProcess:
    proc: subprocess.Popen[bytes]
    app: Path
    info: dict[str, Any]
    log: Path

    @property
    def cloud_url(self) -> str:
        return f"http://{self.info['cloud']['host']}"

    @property
    def dashboard_url(self) -> str:
        return str(self.info["dashboard_url"])

    def client(self) -> Any:
        return lambda_client(self.cloud_url)

    def invoke(self, function: str, event: Any) -> tuple[dict[str, Any], Any]:
        response = self.client().invoke(FunctionName=function, Payload=json.dumps(event))
        return response, json.loads(response["Payload"].read())

    def write_hello(self, version: str) -> None:
        (self.app / "hello.py").write_text(HELLO.format(version=version))

    def api(self, path: str) -> Any:
        """GET the dashboard's JSON API, e.g. api("functions")."""
        response = httpx.get(self.dashboard_url + "api/" + path, timeout=10)
        response.raise_for_status()
        return response.json()

    def cloud_faults(self, **spec: Any) -> dict[str, Any]:
        """The AppSync emulator's fault injection (devserver/cloud/faults.py)."""
        response = httpx.post(f"{self.cloud_url}/_livelambda/faults", json=spec, timeout=10)
        response.raise_for_status()
        return response.json()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
        return wait_until(predicate, timeout, what, self.output)


@contextlib.contextmanager
def running_dev(
    tmp_path: Path,
    hello: str | None = None,
    prepare: Callable[[Path], None] | None = None,
    log: Path | None = None,
) -> Iterator[DevProcess]:
    """`livelambda dev APP --cloud --cloud-port 0 --port 0` on a copy of examples/hello in tmp_path."""
    app = tmp_path / "hello"
    shutil.copytree(REPO / "examples" / "hello", app, ignore=shutil.ignore_patterns(".livelambda"))
    if hello is not None:
        (app / "hello.py").write_text(hello)
    if prepare is not None:
        prepare(app)
    ready = tmp_path / "dev.json"
    log = log or tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devserver", "dev", str(app), "--cloud", "--cloud-port", "0",
             "--port", "0", "--ready-file", str(ready)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc, signal.SIGINT, timeout=20)
            raise AssertionError(f"livelambda dev did not start:\n{log.read_text()}")
        time.sleep(0.05)
    process = DevProcess(proc, app, json.loads(ready.read_text()), log)
    try:
        yield process
    finally:
        started = descendants(proc.pid)
        stop_process(proc, signal.SIGINT, timeout=20)
        left = _wait_gone(started)
        if left:
            for pid in left:  # do not leak them into the next test, then fail this one
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"livelambda dev left processes behind: {left}\n{process.output()[-3000:]}")


def descendants(pid: int) -> set[int]:
    """Every living descendant of `pid` (children, their children...), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pids: set[int], timeout: float = 20.0) -> list[int]:
    """The pids still alive (zombies count as gone) after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(p for p in pids if _alive(p))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
