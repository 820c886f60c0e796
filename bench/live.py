"""The live path, measured side by side in one run (printed, never asserted).

1. Latency of a 1 KB invocation, boto3 wall time, of a handler that returns its event:
     live      boto3 -> `livelambda cloud` (sandbox running the stub) -> AppSync emulator ->
               `livelambda dev` (bridge -> worker) -> AppSync emulator -> stub -> boto3
     live off  the same handler in a second `livelambda cloud` without --live (its own sandbox)
     relay     a bare `websockets` relay on loopback: A -> relay -> B -> relay -> A, 1 KB, one round
               trip (the floor of one AppSync hop); relay and B are processes of their own
     worker hop  a bare Lambda Runtime API round trip to a real awslambdaric process running the same
               handler (the floor of the dev server's hop to its worker; bench/worker_hop.py: the
               server runs in this process's event loop, the worker is a process of its own)
   interleaved in batches, round-robin, so that the noise of a shared machine hits all four alike.
   The reference: live p50 against live-off p50 + relay p50 + worker hop p50 (what live mode must
   add at least: one AppSync round trip and the dev server's hop to its worker); the older
   reference without the worker hop is printed too.
   Where the time goes: the CPU time each process spent per call (/proc/PID/task/*/schedstat; the
   path is mostly a chain, so on 2 CPUs its CPU time roughly adds up to its wall time), and the live
   invocation hop by hop, from the milestones the dev server records for each one (dashboard API).
2. Throughput: 32 concurrent callers for ~10 s against the live path (an asyncio HTTP/1.1 client,
   one keep-alive connection per caller, posting to the Invoke API), and 32 relay round trips in
   flight for as long; the CPU each part of the system used meanwhile (the callers' own included).
3. Memory: the dev server idle, its workers and forkservers (VmRSS and Pss), the cloud and a sandbox.

    python -m bench live        (or: python -m bench.live)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import pct
from bench.worker_hop import WorkerHop
from devserver.processes import stop_process

# 1. latency
SAMPLES = 500  # measured invocations per path
WARMUP = 30  # per path, not measured
BATCH = 10  # invocations of one path in a row, then the next path
TARGET_LATENCY_RATIO = 1.5
# 2. throughput
CALLERS = 32
DURATION_S = 10.0
WARM_MIN_S = 2.0  # at least this long, and until every caller has had a few answers
WARM_MAX_S = 40.0
CLOUD_CONCURRENCY = 40  # sandboxes per function, above CALLERS: nobody is throttled
TARGET_RATE = 300.0  # invocations/s
# 3. memory
TARGET_IDLE_RSS_MB = 120.0

START_TIMEOUT_S = 60.0
REPO = Path(__file__).resolve().parent.parent
EVENT: dict[str, Any] = {"id": 0, "data": "x" * 990}  # 1 KB of JSON with its id
PAYLOAD = json.dumps(EVENT).encode()
assert 1000 <= len(PAYLOAD) <= 1024, len(PAYLOAD)
HANDLER = "def echo(event, context):\n    return event\n"
APP_TOML = 'app = "{app}"\nstage = "bench"\n\n[functions.echo]\nhandler = "funcs.echo"\ntimeout = 30\n'
CLK_TCK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1


# ------------------------------------------------------------------------------------------ stats
def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


# ------------------------------------------------------------------------------------------ /proc
@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cmdline: str


def processes() -> dict[int, Proc]:
    out: dict[int, Proc] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        out[int(entry.name)] = Proc(int(entry.name), int(rest[1]), cmd)
    return out


def descendants(root: int, table: dict[int, Proc]) -> list[Proc]:
    children: dict[int, list[int]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(table[pid])
        todo.extend(children.get(pid, []))
    return found


@dataclass(frozen=True)
class Memory:
    rss_kb: int  # VmRSS
    pss_kb: int  # Pss: shared pages split among the processes that share them
    uss_kb: int  # Private_Clean + Private_Dirty: what this process alone holds


def memory(pid: int) -> Memory | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None

    def field_kb(text: str, name: str) -> int:
        for line in text.splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        return 0

    private = field_kb(rollup, "Private_Clean") + field_kb(rollup, "Private_Dirty")
    return Memory(field_kb(status, "VmRSS"), field_kb(rollup, "Pss"), private)


def mb(kb: float) -> str:
    return f"{kb / 1024:6.1f}"


def cpu_ns(pid: int) -> tuple[int, int]:
    """(ns on a CPU, ns waiting for one) of all threads of `pid`, from /proc/PID/task/*/schedstat."""
    run = wait = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0, 0
    for tid in tasks:
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
        except OSError:
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return run, wait


def role_cpu(roles: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
    out = {}
    for role, pids in roles.items():
        both = [cpu_ns(pid) for pid in pids]
        out[role] = (sum(r for r, _ in both), sum(w for _, w in both))
    return out


def machine_busy_s() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK  # all but idle and iowait


# ------------------------------------------------------------------------------------------ processes
def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIVELAMBDA_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path, log: Path, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc, signal.SIGTERM, 20.0)
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} did not start:\n{tail}")
        time.sleep(0.02)
    return json.loads(ready.read_text())


def write_app(root: Path, name: str) -> Path:
    root.mkdir(parents=True)
    (root / "livelambda.toml").write_text(APP_TOML.format(app=name))
    (root / "funcs.py").write_text(HANDLER)
    return root


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    info: dict[str, Any]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_dev(
    workdir: Path, app: Path | None = None, *, cloud: bool = True, env: dict[str, str] | None = None
) -> Started:
    """`livelambda dev APP --cloud`: the dev server, and the live cloud as its child. `app`: an app
    directory already written (by default this module's echo app, written under `workdir`). Stop it
    with `stop_dev`, or use `running_dev`. `cloud=False`: the dev server alone, connecting where the
    app's config says; `env`: added to its environment."""
    if app is None:
        app = write_app(workdir / "live-app", "benchlive")
    ready, log = workdir / "dev.json", workdir / "dev.log"
    args = [sys.executable, "-m", "devserver", "dev", str(app), "--port", "0", "--ready-file", str(ready)]
    if cloud:
        args += ["--cloud", "--cloud-port", "0", "--cloud-concurrency", str(CLOUD_CONCURRENCY)]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**_env(), **(env or {})},
                                cwd=REPO)  # fmt: skip
    return Started(proc, _wait_ready(proc, ready, log, "livelambda dev" + (" --cloud" if cloud else "")), log)


def stop_dev(dev: Started) -> None:
    """Stop `livelambda dev --cloud` as Ctrl+C does: its cloud, sandboxes and workers go with it."""
    stop_process(dev.proc, signal.SIGINT, 20.0)


@contextlib.contextmanager
def running_dev(
    workdir: Path, app: Path | None = None, *, cloud: bool = True, env: dict[str, str] | None = None
) -> Iterator[Started]:
    """`start_dev`, stopped again on the way out, whatever happens."""
    dev = start_dev(workdir, app, cloud=cloud, env=env)
    try:
        yield dev
    finally:
        stop_dev(dev)


def start_plain_cloud(workdir: Path) -> Started:
    """`livelambda cloud --app APP` without --live: the handler runs in the cloud's sandbox."""
    return start_cloud(workdir, write_app(workdir / "plain-app", "benchplain"), name="plain")


def start_cloud(
    workdir: Path, app: Path, *args: str, name: str = "cloud", env: dict[str, str] | None = None
) -> Started:
    """`livelambda cloud --app APP --port 0 [ARGS...]` (a fresh API key unless ARGS give one), its
    ready file and log `<name>.json` / `<name>.log` in `workdir`; `env`: added to its environment."""
    ready, log = workdir / f"{name}.json", workdir / f"{name}.log"
    key = [] if "--api-key" in args else ["--api-key", "da2-" + secrets.token_hex(13)]
    cmd = [sys.executable, "-m", "devserver", "cloud", "--app", str(app), "--port", "0", *key,
           "--ready-file", str(ready), *args]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**_env(), **(env or {})},
                                cwd=REPO)  # fmt: skip
    return Started(proc, _wait_ready(proc, ready, log, "livelambda cloud"), log)


def start_python(workdir: Path, name: str, code: str, *args: str) -> subprocess.Popen[bytes]:
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=log, stderr=subprocess.STDOUT,
                            env=_env(), cwd=REPO)  # fmt: skip
    log.close()
    return proc


# ------------------------------------------------------------------------------------------ the relay
# A bare websockets relay: A connections at /a/<key>, one B at /b. What an A sends goes to B as
# "<key>|<message>"; what B sends goes to the A named by its key. B echoes. Default asyncio loop,
# no compression (the stub's client has none either), no pings.
# asyncio reads into a fresh 256 KiB buffer each time. glibc serves a block that large with mmap (and
# the shrink to the message's size with mremap) until one of that size has been freed once, which
# some processes do while starting and others never: a relay left in that state pays three system
# calls a message, ~20 % of its round trip. So the relay and B free one such block first, and are
# measured in the steady state a long-running server reaches. (The live path's processes read with
# uvloop, or into a buffer of their own: no such allocation.)
_STEADY_MALLOC = "bytearray(1 << 20)  # see _STEADY_MALLOC in bench/live.py"
RELAY_SERVER = """
import asyncio, sys
from pathlib import Path
from websockets.asyncio.server import serve
""" + _STEADY_MALLOC + """

async def main(port_file):
    a, b = {}, []

    async def handler(ws):
        path = ws.request.path
        if path == "/b":
            b.append(ws)
            async for msg in ws:
                key, _, rest = msg.partition("|")
                peer = a.get(key)
                if peer is not None:
                    await peer.send(rest)
            return
        key = path.rsplit("/", 1)[1]
        a[key] = ws
        async for msg in ws:
            await b[0].send(key + "|" + msg)

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=None) as s:
        port = s.sockets[0].getsockname()[1]
        Path(port_file + ".tmp").write_text(str(port))
        Path(port_file + ".tmp").rename(port_file)
        await asyncio.Future()

asyncio.run(main(sys.argv[1]))
"""
RELAY_ECHO = """
import asyncio, sys
from websockets.asyncio.client import connect
""" + _STEADY_MALLOC + """

async def main(url):
    async with connect(url, compression=None, ping_interval=None, max_size=None) as ws:
        async for msg in ws:
            await ws.send(msg)

asyncio.run(main(sys.argv[1]))
"""


@dataclass
class Relay:
    server: subprocess.Popen[bytes]
    echo: subprocess.Popen[bytes]
    url: str


def start_relay(workdir: Path) -> Relay:
    port_file = workdir / "relay.port"
    server = start_python(workdir, "relay", RELAY_SERVER, str(port_file))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_file.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("relay did not start:\n" + (workdir / "relay.log").read_text()[-2000:])
        time.sleep(0.02)
    url = f"ws://127.0.0.1:{port_file.read_text()}"
    echo = start_python(workdir, "relay-echo", RELAY_ECHO, url + "/b")
    return Relay(server, echo, url)


async def relay_connect(url: str, key: str) -> Any:
    from websockets.asyncio.client import connect

    return await connect(f"{url}/a/{key}", compression=None, ping_interval=None, max_size=None)


# ------------------------------------------------------------------------------------------ roles
def roles_of(
    dev: Started, plain: Started | None = None, relay: Relay | None = None, hop: WorkerHop | None = None
) -> dict[str, list[int]]:
    """The processes by role: this process (the callers, and the worker hop's Runtime API), the live
    cloud and its sandboxes, the dev server, its forkservers and workers; the live-off cloud and its
    sandbox; the relay and its B; the worker hop's awslambdaric."""
    table = processes()
    cloud = int(dev.info["cloud"]["pid"])
    roles: dict[str, list[int]] = {"caller": [os.getpid()], "cloud": [cloud], "sandbox": [],
                                   "dev server": [dev.pid], "forkserver": [], "worker": []}  # fmt: skip
    roles["sandbox"] = [p.pid for p in descendants(cloud, table)]
    for p in table.values():
        if p.ppid == dev.pid and "forkserver.py" in p.cmdline:
            roles["forkserver"].append(p.pid)
            roles["worker"].extend(c.pid for c in descendants(p.pid, table))
        elif p.ppid == dev.pid and p.pid != cloud:
            roles["worker"].append(p.pid)  # spawned workers (the fallback launcher)
    if plain is not None:
        roles["off cloud"] = [plain.pid]
        roles["off sandbox"] = [p.pid for p in descendants(plain.pid, table)]
    if relay is not None:
        roles["relay"] = [relay.server.pid]
        roles["B"] = [relay.echo.pid]
    if hop is not None:
        roles["hop worker"] = [hop.pid]
    return roles


# ------------------------------------------------------------------------------------------ 1. latency
def lambda_client(host: str, *, scheme: str = "http", verify: str | None = None) -> Any:
    """boto3's Lambda client for the cloud at `host`; `verify`: the CA file of an https cloud."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "lambda",
        endpoint_url=f"{scheme}://{host}",
        verify=verify,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60, connect_timeout=10),
    )


def event_bytes(n: int) -> bytes:
    return json.dumps({**EVENT, "id": n}).encode()


def boto3_invoke(client: Any, n: int, calls: dict[str, tuple[float, float]] | None = None) -> float:
    """One invocation; its wall time in ms. `calls` gets request id -> (start, end), epoch ms."""
    payload = event_bytes(n)
    start = time.time()
    t0 = time.perf_counter()
    response = client.invoke(FunctionName="echo", Payload=payload)
    body = response["Payload"].read()
    ms = (time.perf_counter() - t0) * 1000
    if "FunctionError" in response or json.loads(body) != {**EVENT, "id": n}:
        raise RuntimeError(f"echo answered {body[:300]!r}")
    if calls is not None:
        calls[response["ResponseMetadata"]["RequestId"]] = (start * 1000, start * 1000 + ms)
    return ms


def relay_round_trip(loop: asyncio.AbstractEventLoop, ws: Any, n: int) -> float:
    message = event_bytes(n).decode()

    async def one() -> str:
        await ws.send(message)
        return await ws.recv()

    t0 = time.perf_counter()
    got = loop.run_until_complete(one())
    ms = (time.perf_counter() - t0) * 1000
    if got != message:
        raise RuntimeError(f"the relay answered {got[:200]!r}")
    return ms


def worker_hop_round_trip(loop: asyncio.AbstractEventLoop, hop: WorkerHop, n: int) -> float:
    payload = event_bytes(n)
    t0 = time.perf_counter()
    body = loop.run_until_complete(hop.invoke(payload))
    ms = (time.perf_counter() - t0) * 1000
    if json.loads(body) != {**EVENT, "id": n}:
        raise RuntimeError(f"awslambdaric answered {body[:300]!r}")
    return ms


LATENCY_LABELS = {
    "live": "live      boto3 -> cloud -> stub -> AppSync -> dev -> worker -> back",
    "live off": "live off  boto3 -> cloud -> sandbox running the handler -> back",
    "relay": "relay     A -> websockets relay -> B -> relay -> A",
    "worker hop": "worker hop  Runtime API (this process) -> awslambdaric -> echo -> back",
}


def bench_latency(
    loop: asyncio.AbstractEventLoop, dev: Started, plain: Started, relay: Relay, hop: WorkerHop
) -> None:
    live_client, plain_client = lambda_client(dev.info["cloud"]["host"]), lambda_client(plain.info["host"])
    ws = loop.run_until_complete(relay_connect(relay.url, "lat"))
    n = 0

    def counter() -> int:
        nonlocal n
        n += 1
        return n

    paths: dict[str, Callable[[], float]] = {
        "live": lambda: boto3_invoke(live_client, counter(), calls if measuring else None),
        "live off": lambda: boto3_invoke(plain_client, counter()),
        "relay": lambda: relay_round_trip(loop, ws, counter()),
        "worker hop": lambda: worker_hop_round_trip(loop, hop, counter()),
    }
    samples: dict[str, list[float]] = {k: [] for k in paths}
    calls: dict[str, tuple[float, float]] = {}  # the live ones: request id -> (start, end)
    measuring = False
    started = time.perf_counter()
    for _ in range(WARMUP):
        for run in paths.values():
            run()
    measuring = True
    # CPU time of every process, summed over each path's batches (the processes exist by now).
    roles = roles_of(dev, plain, relay, hop)
    cpu: dict[str, dict[str, list[int]]] = {k: {r: [0, 0] for r in roles} for k in paths}
    order = list(paths)
    for r in range(SAMPLES // BATCH):
        first = r % len(order)
        for name in order[first:] + order[:first]:  # each path goes first in turn
            run = paths[name]
            before = role_cpu(roles)
            samples[name].extend(run() for _ in range(BATCH))
            after = role_cpu(roles)
            for role, acc in cpu[name].items():
                acc[0] += after[role][0] - before[role][0]
                acc[1] += after[role][1] - before[role][1]
    wall = time.perf_counter() - started
    loop.run_until_complete(ws.close())
    live_client.close()
    plain_client.close()

    print(f"1. latency: 1 KB event, handler returns it; {SAMPLES} samples a path after {WARMUP} warm-up, "
          f"interleaved in batches of {BATCH} ({wall:.0f} s); ms")  # fmt: skip
    print(f"   {'path':<70} {'p50':>6} {'p99':>6}")  # these lines and the ratios: bench/ab.py reads them
    for name, values in samples.items():
        print(f"   {LATENCY_LABELS[name]:<70} {pct(values, 0.5):6.2f} {pct(values, 0.99):6.2f}")
    live, off, rel, hop_ms = (pct(samples[k], 0.5) for k in ("live", "live off", "relay", "worker hop"))
    ratio = live / (off + rel + hop_ms)
    print(f"   live p50 / (live-off p50 + relay p50 + worker hop p50) = {live:.2f} / ({off:.2f} + "
          f"{rel:.2f} + {hop_ms:.2f}) = {ratio:.2f}x  (target <= {TARGET_LATENCY_RATIO}x: "
          f"{verdict(ratio <= TARGET_LATENCY_RATIO)})")  # fmt: skip
    old_ratio = live / (off + rel)
    print(f"   live p50 / (live-off p50 + relay p50) = {live:.2f} / ({off:.2f} + {rel:.2f}) = "
          f"{old_ratio:.2f}x  (the older reference, without the worker hop)")  # fmt: skip
    print(f"   live p50 - live-off p50 = {live - off:.2f} ms: what live mode adds ({(live - off) / rel:.1f} "
          f"relay round trips; relay + worker hop = {rel + hop_ms:.2f} ms)")  # fmt: skip

    # Where the time goes: CPU per call of each process (the path is a chain: its CPU adds up).
    shown = [r for r in roles if any(cpu[k][r][0] / SAMPLES >= 20_000 for k in paths)]
    print(f"   CPU per call by process, ms (schedstat; mean wall for comparison); {CPUS} CPUs")
    print(f"   {'':<10}" + "".join(f"{r:>12}" for r in shown) + f"{'sum':>8}{'wait':>7}{'wall':>7}")
    for name in paths:
        per = {r: cpu[name][r][0] / SAMPLES / 1e6 for r in roles}
        waited = sum(w for _, w in cpu[name].values()) / SAMPLES / 1e6
        cells = "".join(f"{per[r]:12.2f}" if per[r] >= 0.02 else f"{'-':>12}" for r in shown)
        print(f"   {name:<10}{cells}{sum(per.values()):8.2f}{waited:7.2f}"
              f"{statistics.fmean(samples[name]):7.2f}")  # fmt: skip
        waits = {r: cpu[name][r][1] / SAMPLES / 1e6 for r in roles}
        cells = "".join(f"{waits[r]:12.2f}" if per[r] >= 0.02 else f"{'-':>12}" for r in shown)
        print(f"   {'  wait':<10}{cells}")
    print("   (wait: time the path's processes were runnable but had no CPU)")
    print_hops(dev, calls)


HOPS = (  # (from, to, what happens between); milestones: the dev server's timings of each invocation
    ("call", "sent", "boto3 -> Invoke API -> sandbox thawed -> Runtime API -> stub publishes"),
    ("sent", "received", "AppSync: stub -> emulator -> dev server (sent: the stub's whole ms)"),
    ("received", "started", "dev server: verify, record, to the runner"),
    ("started", "finished", "runner: Runtime API -> worker runs the handler -> its answer"),
    ("finished", "published", "dev server: result encoded and handed to AppSync, in that callback"),
    ("published", "answer", "AppSync -> stub -> Runtime API -> Invoke API -> boto3"),
)


def print_hops(dev: Started, calls: dict[str, tuple[float, float]]) -> None:
    """Where a live invocation's time goes, from the milestones the dev server records (dashboard API)."""
    import urllib.request

    url = dev.info["dashboard_url"] + f"api/invocations?limit={len(calls)}&source=live"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            records = json.load(response)
    except (OSError, ValueError) as exc:
        print(f"   (no per-hop breakdown: {url}: {exc})")
        return
    spans: dict[tuple[str, str], list[float]] = {(a, b): [] for a, b, _ in HOPS}
    for record in records:
        if record.get("id") not in calls:
            continue
        marks = {**record.get("timings", {})}
        marks["call"], marks["answer"] = calls[record["id"]]
        if all(k in marks for a, b, _ in HOPS for k in (a, b)):
            for a, b, _ in HOPS:
                spans[(a, b)].append(marks[b] - marks[a])
    count = len(spans[(HOPS[0][0], HOPS[0][1])])
    if not count:
        print("   (no per-hop breakdown: the dev server recorded no matching timings)")
        return
    print(f"   live, hop by hop: mean ms of {count} invocations (wall clock of each process)")
    for a, b, what in HOPS:
        print(f"     {statistics.fmean(spans[(a, b)]):6.2f}  {a + ' -> ' + b:<22} {what}")


# ------------------------------------------------------------------------------------------ 2. throughput
@dataclass
class Load:
    """Closed-loop callers: each one sends its next request when the last answer is in."""

    measure_from: float = float("inf")
    measure_to: float = float("inf")
    stop: bool = False
    latencies: list[float] = field(default_factory=list)  # ms, of answers within the window
    errors: list[str] = field(default_factory=list)  # within the window
    warm_errors: list[str] = field(default_factory=list)
    answers: dict[int, int] = field(default_factory=dict)  # per caller, warm-up included

    def record(self, caller: int, t0: float, t1: float, error: str | None) -> None:
        self.answers[caller] = self.answers.get(caller, 0) + 1
        if self.measure_from <= t1 < self.measure_to:
            if error is None:
                self.latencies.append((t1 - t0) * 1000)
            else:
                self.errors.append(error)
        elif error is not None and t1 < self.measure_from:
            self.warm_errors.append(error)


async def http_caller(load: Load, caller: int, host: str, port: int) -> None:
    """POST /2015-03-31/functions/echo/invocations over one keep-alive HTTP/1.1 connection."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    n = caller * 10_000_000
    while not load.stop:
        n += 1
        body = event_bytes(n)
        request = (
            f"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        t0 = time.perf_counter()
        error = None
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert reader is not None
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            status = int(head.split(" ", 2)[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:] if line)
            }
            answer = await reader.readexactly(int(headers.get("content-length", "0")))
            if status != 200:
                error = f"HTTP {status} {headers.get('x-amzn-errortype', '')}"
            elif "x-amz-function-error" in headers:
                error = f"function error: {answer[:200]!r}"
            elif json.loads(answer).get("id") != n:
                error = f"wrong answer: {answer[:100]!r}"
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if writer is not None:
                writer.close()
            reader = writer = None
        load.record(caller, t0, time.perf_counter(), error)
    if writer is not None:
        writer.close()


async def relay_caller(load: Load, caller: int, url: str) -> None:
    ws = await relay_connect(url, str(caller))
    n = caller * 10_000_000
    try:
        while not load.stop:
            n += 1
            message = event_bytes(n).decode()
            t0 = time.perf_counter()
            await ws.send(message)
            got = await ws.recv()
            load.record(caller, t0, time.perf_counter(), None if got == message else "wrong answer")
    finally:
        await ws.close()


@dataclass(frozen=True)
class CpuSnapshot:
    at: float
    roles: dict[str, tuple[int, int]]
    busy_s: float  # the whole machine

    @classmethod
    def take(cls, roles: dict[str, list[int]]) -> CpuSnapshot:
        return cls(time.perf_counter(), role_cpu(roles), machine_busy_s())


async def run_load(
    load: Load, callers: Sequence[Callable[[], Any]], warmed: Callable[[], bool], roles: Callable[[], dict]
) -> tuple[CpuSnapshot, CpuSnapshot, float]:
    tasks = [asyncio.ensure_future(c()) for c in callers]
    started = time.perf_counter()
    try:
        while True:
            await asyncio.sleep(0.25)
            elapsed = time.perf_counter() - started
            if elapsed > WARM_MAX_S:
                raise RuntimeError(f"not warm after {WARM_MAX_S:.0f} s: answers per caller {load.answers}")
            if elapsed >= WARM_MIN_S and warmed():
                break
            for t in tasks:
                if t.done():
                    t.result()  # a caller died: say why
        watched = roles()
        load.measure_from = time.perf_counter()
        before = CpuSnapshot.take(watched)
        await asyncio.sleep(DURATION_S)
        load.measure_to = time.perf_counter()
        after = CpuSnapshot.take(watched)
        load.stop = True
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        for t in tasks:
            t.cancel()
    return before, after, load.measure_from - started


def cpu_shares(before: CpuSnapshot, after: CpuSnapshot) -> str:
    """Each role's CPU during the window, in % of one CPU."""
    wall = after.at - before.at
    parts, ours = [], 0.0
    for role, (run, _) in after.roles.items():
        share = (run - before.roles[role][0]) / 1e9 / wall
        ours += share
        if share >= 0.005:
            parts.append(f"{role} {share:.0%}")
    machine = (after.busy_s - before.busy_s) / wall
    return (", ".join(parts) + f"; all other processes {max(0.0, machine - ours):.0%}; "
            f"machine busy {machine:.0%} of {CPUS * 100}%")  # fmt: skip


def bench_throughput(loop: asyncio.AbstractEventLoop, dev: Started, relay: Relay) -> None:
    host, port = dev.info["cloud"]["host"].rsplit(":", 1)
    live = Load()
    callers = [lambda i=i: http_caller(live, i, host, int(port)) for i in range(CALLERS)]

    def warmed() -> bool:  # every caller has its sandbox: a few answers each
        return len(live.answers) == CALLERS and min(live.answers.values()) >= 5

    before, after, warm_s = loop.run_until_complete(run_load(live, callers, warmed, lambda: roles_of(dev)))
    roles = roles_of(dev)
    rate = len(live.latencies) / (after.at - before.at)  # its line and relay's: bench/ab.py reads them
    print(f"2. throughput: {CALLERS} concurrent callers for {DURATION_S:.0f} s, after {warm_s:.1f} s of "
          f"warm-up; callers: asyncio HTTP/1.1, a keep-alive connection each, in this process")  # fmt: skip
    print(f"   live   {rate:7.0f} invocations/s  p50 {pct(live.latencies, 0.5):6.1f} ms  "
          f"p99 {pct(live.latencies, 0.99):6.1f} ms  errors {len(live.errors)}  "
          f"(target >= {TARGET_RATE:.0f}/s: {verdict(rate >= TARGET_RATE)}; "
          f"0 errors: {verdict(not live.errors)})")  # fmt: skip
    if live.errors or live.warm_errors:
        kinds = sorted(set(live.errors + live.warm_errors))[:5]
        print(f"          errors in the window {len(live.errors)}, in the warm-up {len(live.warm_errors)}: "
              f"{kinds}")  # fmt: skip
    print(f"          CPU, % of one CPU: {cpu_shares(before, after)}")
    print(f"          ({len(roles['sandbox'])} sandboxes, {len(roles['worker'])} dev workers; "
          f"CPU per invocation {sum_ms(before, after) / len(live.latencies):.2f} ms)")  # fmt: skip

    relay_load = Load()
    relay_callers = [lambda i=i: relay_caller(relay_load, i, relay.url) for i in range(CALLERS)]
    relay_roles = {"caller": [os.getpid()], "relay": [relay.server.pid], "B": [relay.echo.pid]}
    before, after, _ = loop.run_until_complete(
        run_load(relay_load, relay_callers, lambda: len(relay_load.answers) == CALLERS, lambda: relay_roles)
    )
    relay_rate = len(relay_load.latencies) / (after.at - before.at)
    print(f"   relay  {relay_rate:7.0f} round trips/s   p50 {pct(relay_load.latencies, 0.5):6.1f} ms  "
          f"p99 {pct(relay_load.latencies, 0.99):6.1f} ms  errors {len(relay_load.errors)}  "
          f"(live / relay: {rate / relay_rate:.3f})")  # fmt: skip
    print(f"          CPU, % of one CPU: {cpu_shares(before, after)}")


def sum_ms(before: CpuSnapshot, after: CpuSnapshot) -> float:
    return sum(run - before.roles[role][0] for role, (run, _) in after.roles.items()) / 1e6


# ------------------------------------------------------------------------------------------ 3. memory
def memory_rows(dev: Started, plain: Started) -> list[str]:
    roles = roles_of(dev, plain)
    idle = memory(dev.pid)
    assert idle is not None
    rss_mb = idle.rss_kb / 1024
    met = verdict(rss_mb < TARGET_IDLE_RSS_MB)
    rows = [f"   dev server (idle)      {mb(idle.rss_kb)} / {mb(idle.pss_kb)} / {mb(idle.uss_kb)}  "
            f"(target VmRSS < {TARGET_IDLE_RSS_MB:.0f} MB: {met})"]  # fmt: skip

    def row(label: str, pids: Sequence[int]) -> None:
        found = [m for m in (memory(p) for p in pids) if m is not None]
        if not found:
            rows.append(f"   {label:<22} none")
            return
        med = [statistics.median(getattr(m, f) for m in found) for f in ("rss_kb", "pss_kb", "uss_kb")]
        total_pss = sum(m.pss_kb for m in found)
        many = f"each (median of {len(found)}), Pss of all {mb(total_pss).strip()}" if len(found) > 1 else ""
        rows.append(f"   {label:<22} {mb(med[0])} / {mb(med[1])} / {mb(med[2])}  {many}")

    row("forkserver", roles["forkserver"])
    row("dev worker", roles["worker"])
    row("cloud (live)", roles["cloud"])
    row("sandbox (live: stub)", roles["sandbox"])
    row("cloud (live off)", roles["off cloud"])
    row("sandbox (live off)", roles["off sandbox"])
    return rows


def print_memory(snapshots: dict[str, list[str]]) -> None:
    print("3. memory, MB: VmRSS / Pss / USS (private)")
    for when, rows in snapshots.items():
        print(f"   {when}:")
        print("\n".join(rows))
    print("   Pss is the fair per-worker figure: a forked worker shares the forkserver's pages (copy on")
    print("   write), which VmRSS counts in full in every process; USS is what one more worker adds.")


# ------------------------------------------------------------------------------------------ main
@contextlib.contextmanager
def system(
    workdir: Path, loop: asyncio.AbstractEventLoop
) -> Iterator[tuple[Started, Started, Relay, WorkerHop]]:
    """Everything the runs measure; the worker hop's Runtime API serves in `loop`."""
    started: list[tuple[subprocess.Popen[bytes], int]] = []
    hop = WorkerHop()
    try:
        dev = start_dev(workdir)
        started.append((dev.proc, signal.SIGINT))
        plain = start_plain_cloud(workdir)
        started.append((plain.proc, signal.SIGTERM))
        relay = start_relay(workdir)
        started += [(relay.echo, signal.SIGTERM), (relay.server, signal.SIGTERM)]
        hop_app = write_app(workdir / "hop-app", "benchhop")
        loop.run_until_complete(hop.start(hop_app, "funcs.echo", workdir / "hop.log", START_TIMEOUT_S))
        yield dev, plain, relay, hop
    finally:
        loop.run_until_complete(hop.close())
        for proc, sig in started:
            stop_process(proc, sig, 20.0)


def new_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"
    return uvloop.new_event_loop(), "uvloop"


def main() -> None:
    started = time.perf_counter()
    busy, t0 = machine_busy_s(), time.perf_counter()
    time.sleep(0.5)
    others = (machine_busy_s() - busy) / (time.perf_counter() - t0)
    print(f"live path -- Python {platform.python_version()} ({sys.implementation.cache_tag}), "
          f"{CPUS} CPUs, loopback; the machine was {others:.0%} busy before the bench "
          f"(of {CPUS * 100}%)")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="livelambda-bench-live-"))
    loop, loop_kind = new_loop()
    memory_at: dict[str, list[str]] = {}
    try:
        with system(workdir, loop) as (dev, plain, relay, hop):
            print(f"   `livelambda dev --cloud` pid {dev.pid}, its cloud {dev.info['cloud']['pid']} "
                  f"(--cloud-concurrency {CLOUD_CONCURRENCY}); live-off cloud {plain.pid}; "
                  f"worker hop's awslambdaric {hop.pid}; this process runs {loop_kind}")  # fmt: skip
            bench_latency(loop, dev, plain, relay, hop)
            time.sleep(1.0)
            memory_at["after the latency runs, 1 s idle"] = memory_rows(dev, plain)
            bench_throughput(loop, dev, relay)
            time.sleep(1.0)
            memory_at[f"after the {CALLERS}-caller load, 1 s idle"] = memory_rows(dev, plain)
    finally:
        loop.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print_memory(memory_at)
    print(f"   ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
