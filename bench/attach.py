"""`livelambda aws up` / `aws down` of 30 functions over an emulated WAN (printed, never asserted).

The control plane is moto's server on loopback (in this process, counting the requests it answers by
service); `up` and `down` run as the developer runs them, as subprocesses, with AWS_ENDPOINT_URL
pointing at a delaying TCP proxy (bench/netem.py) in front of it:
  WAN   25 ms each way: every request/response costs 50 ms (one RTT), and every new TCP connection one
        RTT more (the emulated SYN/SYN-ACK), as to a real region
  0 ms  the same proxy without delay: the fixed cost (interpreter start, imports, stub layer build,
        moto's own work)
Reference: what a sequential tool pays on that link, one RTT per call, from the calls `up` actually
made (30 functions x 50 ms = 1.5 s per call a function). Round 0 (not in the medians) is the first
`up` of the account: it creates the Event API, the alarm and publishes the stub layer; later rounds
find them. Rounds alternate WAN and 0 ms (the machine is shared and noisy).

    python -m bench attach        (or: python -m bench.attach)
"""

from __future__ import annotations

import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.netem import DelayProxy, running_proxy

FUNCTIONS = 30
ONE_WAY_DELAY_S = 0.025
RTT_S = 2 * ONE_WAY_DELAY_S
ROUNDS = 3  # measured rounds, each: up + down on the WAN, then up + down at 0 ms
TARGET_UP_S = 3.0
PEER_UP_S = 20.0  # the issue: a peer tool attaches ~30 functions in ~20 s
RUN_TIMEOUT_S = 300.0
MOTO_WORKERS = 32  # moto's request threads: more than `up` has calls in flight (16 at most)
REGION = "us-east-1"
REPO = Path(__file__).resolve().parent.parent
ROLE_POLICY = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
    '"Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
)
HANDLER = "def handler(event, context):\n    return event\n"


def livelambda() -> list[str]:
    """The `livelambda` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("livelambda")
    return [str(script)] if script.exists() else [sys.executable, "-m", "devserver"]


# ------------------------------------------------------------------------------------------ moto
_SERVICE = re.compile(r"Credential=[^/]*/\d{8}/[^/]*/([^/]+)/")


class CountingMoto:
    """moto's server in this process, counting the requests it answers by service (from the SigV4
    credential scope).

    Served by uvicorn, not by werkzeug as ThreadedMotoServer and `moto_server` are: werkzeug's server
    answers every request with `Connection: close`, so each call would pay a new connection (one RTT
    more on the emulated WAN), where AWS keeps botocore's pooled connections alive."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        import uvicorn
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from uvicorn.middleware.wsgi import WSGIMiddleware

        app = DomainDispatcherApplication(create_backend_app)

        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            found = _SERVICE.search(environ.get("HTTP_AUTHORIZATION", ""))
            with self._lock:
                self.counts[found.group(1) if found else "unsigned"] += 1
            return app(environ, start_response)

        config = uvicorn.Config(
            WSGIMiddleware(counting, workers=MOTO_WORKERS),
            host="127.0.0.1",
            port=0,  # uvicorn binds (and sets TCP_NODELAY on its connections)
            interface="asgi3",
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="moto", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("moto's server did not start")
            time.sleep(0.01)
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()


def handler_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("app.py", HANDLER)
    return buffer.getvalue()


def aws_client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


def create_functions(endpoint: str) -> None:
    """A role and FUNCTIONS Python functions, straight into moto (not through the proxy)."""
    role = aws_client("iam", endpoint).create_role(
        RoleName="bench-attach", AssumeRolePolicyDocument=ROLE_POLICY
    )
    lam, code = aws_client("lambda", endpoint), handler_zip()
    for i in range(FUNCTIONS):
        lam.create_function(
            FunctionName=f"fn{i:02d}",
            Runtime="python3.12",
            Role=role["Role"]["Arn"],
            Handler="app.handler",
            Code={"ZipFile": code},
            Timeout=30,
        )


def live_functions(endpoint: str) -> int:
    """How many of the functions are in live mode (livelambda's settings in their environment)."""
    count = 0
    for page in aws_client("lambda", endpoint).get_paginator("list_functions").paginate():
        for f in page["Functions"]:
            env = (f.get("Environment") or {}).get("Variables") or {}
            count += any(k.startswith("LIVELAMBDA_") for k in env)
    return count


def write_app(root: Path) -> Path:
    root.mkdir(parents=True)
    sections = "".join(f'\n[functions.fn{i:02d}]\nhandler = "app.handler"\n' for i in range(FUNCTIONS))
    (root / "livelambda.toml").write_text(
        f'app = "benchattach"\nstage = "bench"\nregion = "{REGION}"\n{sections}'
    )
    (root / "app.py").write_text(HANDLER)
    return root


# ------------------------------------------------------------------------------------------ runs
def aws_env(endpoint: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIVELAMBDA_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        # No profile of the developer's, and never the instance metadata service: loopback only.
        AWS_CONFIG_FILE=str(workdir / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass(frozen=True)
class Run:
    command: str  # "up" | "down"
    link: str  # "WAN" | "0 ms"
    wall_s: float
    calls: Counter[str]  # requests moto answered, by service
    connections: int  # new TCP connections through the proxy

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


@dataclass
class Bench:
    app: Path
    workdir: Path
    moto: CountingMoto
    moto_url: str  # straight to moto: setup and checks, not counted in a run
    links: dict[str, DelayProxy]  # "WAN" | "0 ms" -> the proxy in front of moto

    def run(self, command: str, link: str) -> Run:
        proxy = self.links[link]
        env = aws_env(f"http://127.0.0.1:{proxy.port}", self.workdir)
        calls, connections = self.moto.snapshot(), proxy.counters.connections
        started = time.perf_counter()
        done = subprocess.run(
            [*livelambda(), "aws", command, "--app", str(self.app)],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
        wall = time.perf_counter() - started
        made = Run(
            command, link, wall, self.moto.snapshot() - calls, proxy.counters.connections - connections
        )
        # Exit status 0 also covers "skipped" functions: check that the work was done.
        live, wanted = live_functions(self.moto_url), FUNCTIONS if command == "up" else 0
        if done.returncode != 0 or live != wanted:
            output = (done.stdout + done.stderr)[-3000:]
            raise RuntimeError(
                f"`livelambda aws {command}` ({link}) exited {done.returncode} and left {live} of "
                f"{FUNCTIONS} functions live (wanted {wanted}):\n{output}"
            )
        return made


def start_up_s() -> float:
    """`livelambda aws up --help`: interpreter start and the CLI's own imports, no AWS work."""
    started = time.perf_counter()
    subprocess.run([*livelambda(), "aws", "up", "--help"], cwd=REPO, capture_output=True, check=True)
    return time.perf_counter() - started


def command_missing() -> str | None:
    """Why `livelambda aws up` cannot be run here, or None."""
    done = subprocess.run([*livelambda(), "aws", "up", "--help"], capture_output=True, text=True, cwd=REPO)
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


@contextmanager
def control_plane(workdir: Path, app: Path) -> Iterator[Bench]:
    moto = CountingMoto()
    port = moto.start()
    try:
        with (
            running_proxy("127.0.0.1", port, one_way_delay_s=ONE_WAY_DELAY_S) as wan,
            running_proxy("127.0.0.1", port, one_way_delay_s=0.0) as local,
        ):
            yield Bench(app, workdir, moto, f"http://127.0.0.1:{port}", {"WAN": wan, "0 ms": local})
    finally:
        moto.stop()


# ------------------------------------------------------------------------------------------ report
def median_of(runs: list[Run], command: str, link: str) -> float:
    return statistics.median(r.wall_s for r in runs if r.command == command and r.link == link)


def one_of(runs: list[Run], command: str, link: str) -> Run:
    return next(r for r in runs if r.command == command and r.link == link)


def by_service(calls: Mapping[str, int]) -> str:
    return ", ".join(f"{service} {n}" for service, n in sorted(calls.items(), key=lambda kv: -kv[1]))


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def report(first: Run, runs: list[Run], start_s: list[float]) -> None:
    ms = RTT_S * 1000
    print(f"{FUNCTIONS} functions; WAN = {ONE_WAY_DELAY_S * 1000:.0f} ms each way: a request/response "
          f"{ms:.0f} ms, a new TCP connection {ms:.0f} ms more; wall time of the whole command, "
          f"{ROUNDS} rounds; seq floor = calls x {ms:.0f} ms (a sequential tool on that link)")  # fmt: skip
    print(f"{'command':<9} {'link':<5} {'p50 s':>6} {'min s':>6} {'calls':>6} {'new conns':>10} "
          f"{'seq floor s':>12} {'p50/floor':>10}")  # fmt: skip
    for command in ("up", "down"):
        for link in ("WAN", "0 ms"):
            walls = [r.wall_s for r in runs if r.command == command and r.link == link]
            sample, wall = one_of(runs, command, link), statistics.median(walls)
            floor = sample.total_calls * RTT_S
            vs = f"{floor:12.2f} {wall / floor:9.2f}x" if link == "WAN" else f"{'-':>12} {'-':>10}"
            print(f"{command:<9} {link:<5} {wall:6.2f} {min(walls):6.2f} {sample.total_calls:6d} "
                  f"{sample.connections:10d} {vs}")  # fmt: skip
    floor = first.total_calls * RTT_S
    print(f"{'first up':<9} {'WAN':<5} {first.wall_s:6.2f} {'-':>6} {first.total_calls:6d} "
          f"{first.connections:10d} {floor:12.2f} {first.wall_s / floor:9.2f}x  "
          "(creates the Event API and the alarm, publishes the stub layer)")  # fmt: skip
    print(f"{'start':<9} {'-':<5} {statistics.median(start_s):6.2f} {min(start_s):6.2f}   "
          "`livelambda aws up --help`: interpreter start + the CLI, no AWS work")  # fmt: skip
    for command in ("up", "down"):
        print(f"  {command} calls: {by_service(one_of(runs, command, 'WAN').calls)}")
    for command in ("up", "down"):
        calls = one_of(runs, command, "WAN").total_calls
        wan, local = median_of(runs, command, "WAN"), median_of(runs, command, "0 ms")
        print(f"{command}: seq floor {calls} calls x {ms:.0f} ms = {calls * RTT_S:.2f} s "
              f"({calls / FUNCTIONS:.1f} calls a function; {FUNCTIONS} x {ms:.0f} ms = "
              f"{FUNCTIONS * RTT_S:.1f} s per call a function); the link added {wan - local:.2f} s = "
              f"{(wan - local) / RTT_S:.1f} RTT (WAN p50 - 0 ms p50) "
              f"to a fixed cost of {local:.2f} s")  # fmt: skip
    up = median_of(runs, "up", "WAN")
    print(f"up of {FUNCTIONS} functions on the WAN: {up:.2f} s p50 ({verdict(up < TARGET_UP_S)} the target "
          f"< {TARGET_UP_S:.0f} s; a peer tool: ~{PEER_UP_S:.0f} s)")  # fmt: skip


def main() -> None:
    started = time.perf_counter()
    missing = command_missing()
    if missing is not None:
        print(f"`livelambda aws up` is not available in this checkout ({missing}): nothing measured.")
        return
    workdir = Path(tempfile.mkdtemp(prefix="livelambda-bench-attach-"))
    try:
        with control_plane(workdir, write_app(workdir / "app")) as bench:
            create_functions(bench.moto_url)
            first = bench.run("up", "WAN")
            bench.run("down", "WAN")
            runs, start_s = [], []
            for _ in range(ROUNDS):
                start_s.append(start_up_s())
                for link in ("WAN", "0 ms"):
                    runs.append(bench.run("up", link))
                    runs.append(bench.run("down", link))
        report(first, runs, start_s)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
