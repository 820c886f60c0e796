"""What one live invocation costs in AppSync Events operations (printed, never asserted).

AppSync Events bills $1.00 per million operations and $0.08 per million connection-minutes. This
module counts, with `livelambda cloud`'s AppSync emulator, the operations each kind of live invocation
causes. `livelambda dev --cloud` (bench/live.py's `running_dev`) runs an app of three functions:
  quick  returns a small dict at once
  slow   sleeps SLOW_S, then returns a small dict (the dev server acks it and sends heartbeats)
  big    returns the ~5.5 MB of JSON it was given (Lambda's synchronous limit is 6 MB each way); called
         with JSON records (which zlib shrinks) and with one base64 string (which it cannot)
each invoked through boto3 against the cloud's Invoke API: once on a new sandbox (its first
invocation connects and subscribes), then N times warm, one after the other.

What is counted: the emulator's counters (GET /_livelambda/stats), read before and after each batch
once they stand still: `events_published` (events accepted by a publish), `events_delivered` (`data`
frames written to subscribers), `publishes` (publish requests, five events at most each),
`connections_total`, `subscriptions_total`. Billed operations = published + delivered. An observer
subscribed to /livelambda/* sorts the published events by message kind (invoke, ack, heartbeat,
result); its own deliveries are taken out of the counts.

Counts, not timings, are the output, and they are the same run after run, but for one thing: the
dev server sends an ack when an invocation is still running after 0.15 s and a heartbeat every 1 s
after that, so those two depend on how long it held the invocation. That time (from the dev
server's own milestones, dashboard API) is printed beside the counts, to show the margin.

    python -m bench operations        (or: python -m bench.operations)
"""

from __future__ import annotations

import base64
import json
import platform
import random
import shutil
import tempfile
import threading
import time
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.live import Started, lambda_client, running_dev
from stub_runtime import live_protocol as lp

QUICK_N = 20
SLOW_N = 3
BIG_N = 3
SLOW_S = 2.0
BIG_BYTES = 5_500_000  # of JSON, each way; Lambda's synchronous limit is 6,291,456 bytes
OPS_PRICE = 1.00  # $ per million operations
MINUTES_PRICE = 0.08  # $ per million connection-minutes
WORKDAY_MIN = 8 * 60
SETTLE_S = 0.1  # the counters must stand still this long before they are read
SETTLE_TIMEOUT_S = 30.0
COUNTERS = ("events_published", "events_delivered", "publishes", "connections_total", "subscriptions_total")
KINDS = (lp.INVOKE, lp.ACK, lp.HEARTBEAT, lp.RESULT, lp.REJECT)

APP_TOML = """app = "benchops"
stage = "bench"

[functions.quick]
handler = "funcs.quick"
timeout = 30

[functions.slow]
handler = "funcs.slow"
timeout = 30

[functions.big]
handler = "funcs.big"
timeout = 60
"""
FUNCS_PY = f"""import time


def quick(event, context):
    return {{"ok": True, "n": event["n"]}}


def slow(event, context):
    time.sleep({SLOW_S})
    return {{"ok": True, "n": event["n"]}}


def big(event, context):
    return {{"n": event["n"], "data": event["data"]}}
"""


# ------------------------------------------------------------------------------------------ payloads
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "kilo", "lima")
_TAGS = ("new", "sale", "eu", "us", "apac", "bulk", "gift", "fragile", "cold", "digital", "returned")


def json_records(size: int) -> list[dict[str, Any]]:
    """Deterministic records, like a page of an API's items, whose JSON is just under `size` bytes."""
    rng = random.Random(20261203)
    rows: list[dict[str, Any]] = []
    total = 2  # the brackets
    while True:
        stamp = (f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                 f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z")  # fmt: skip
        row = {
            "id": len(rows),
            "sku": f"{rng.getrandbits(48):012x}",
            "name": " ".join(rng.choices(_WORDS, k=3)),
            "price": round(rng.uniform(1, 500), 2),
            "qty": rng.randint(0, 5000),
            "tags": rng.sample(_TAGS, 2),
            "updated": stamp,
        }
        grown = total + len(json.dumps(row)) + 2  # and ", " between items
        if grown > size:
            return rows
        rows.append(row)
        total = grown


def base64_blob(size: int) -> str:
    """Deterministic random bytes as base64, at most `size` characters (a file, an image)."""
    return base64.b64encode(random.Random(6).randbytes(size // 4 * 3)).decode()


@dataclass(frozen=True)
class Kind:
    """One kind of invocation: a function and the event it gets."""

    label: str
    function: str
    count: int  # warm invocations
    data: Any  # the event's "data" (big), or None
    about: str

    def event(self, n: int) -> bytes:
        return json.dumps({"n": n} if self.data is None else {"n": n, "data": self.data}).encode()

    def check(self, n: int, answer: Any) -> None:
        want = {"ok": True, "n": n} if self.data is None else {"n": n, "data": self.data}
        if answer != want:
            raise RuntimeError(f"{self.function} answered {json.dumps(answer)[:300]}")


def describe(data: Any) -> str:
    raw = json.dumps(data).encode()
    packed = len(base64.b64encode(zlib.compress(raw, 1)))
    what = f"{len(data):,} records" if isinstance(data, list) else "one base64 string of random bytes"
    return f"{len(raw) / 1e6:.2f} MB of JSON each way ({what}); zlib level 1 + base64: {packed / 1e6:.2f} MB"


def kinds() -> list[Kind]:
    """What is invoked, in order. 40 bytes of room for {"n": ..., "data": ...} around the data."""
    records, blob = json_records(BIG_BYTES - 40), base64_blob(BIG_BYTES - 40)
    return [
        Kind("quick", "quick", QUICK_N, None, "returns a small dict at once"),
        Kind("slow", "slow", SLOW_N, None, f"sleeps {SLOW_S:.0f} s, then returns a small dict"),
        Kind("big json", "big", BIG_N, records, describe(records)),
        Kind("big b64", "big", BIG_N, blob, describe(blob)),
    ]


# ------------------------------------------------------------------------------------------ counting
def emulator_stats(host: str) -> dict[str, Any]:
    """GET http://HOST/_livelambda/stats: the AppSync emulator's counters."""
    with urllib.request.urlopen(f"http://{host}/_livelambda/stats", timeout=30) as response:
        return json.load(response)


class Observer:
    """One more subscriber, to every live channel (/livelambda/*), that sorts what is published by
    message kind (the envelope's `kind`, readable without the session's secret). A thread of its own
    reads the socket."""

    def __init__(self, cloud: dict[str, Any]) -> None:
        from stub_runtime.appsync.auth import ApiKeyAuth
        from stub_runtime.appsync.blocking import BlockingConnection

        self.host: str = cloud["host"]
        self.published_before = 0  # events_published when it subscribed: it saw none of those
        self.conn = BlockingConnection(
            cloud["http_url"], cloud["realtime_url"], ApiKeyAuth(cloud["api_key"], self.host)
        )
        self._received = 0
        self._kinds: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="observer", daemon=True)

    def start(self) -> None:
        deadline = time.monotonic() + 30
        self.conn.connect(deadline)
        self.conn.subscribe(f"/{lp.NAMESPACE}/*", deadline)
        self.published_before = emulator_stats(self.host)["events_published"]  # idle: nothing in flight
        self._thread.start()  # the socket is the thread's from now on

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.conn.close()

    def snapshot(self) -> tuple[int, Counter[str]]:
        with self._lock:
            return self._received, Counter(self._kinds)

    def _read(self) -> None:
        from stub_runtime.appsync.errors import ClientClosed, ConnectionLost

        while not self._stop.is_set():
            try:
                data = self.conn.next_data(time.monotonic() + 0.1)
            except (ConnectionLost, ClientClosed):
                return
            if data is None:
                continue
            kind = data.event.get("kind") if isinstance(data.event, dict) else None
            with self._lock:
                self._received += 1
                self._kinds[kind if kind in KINDS else "other"] += 1


@dataclass(frozen=True)
class Reading:
    counters: tuple[int, ...]  # COUNTERS, in order
    observed: int
    kinds: Counter[str]
    connections_current: int


def settled(observer: Observer) -> Reading:
    """The counters once they stand still and the observer has had every event published so far
    (each one reaches it once)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last: Reading | None = None
    while True:
        stats = emulator_stats(observer.host)
        observed, kinds = observer.snapshot()
        now = Reading(tuple(stats[c] for c in COUNTERS), observed, kinds, stats["connections_current"])
        caught_up = observed == stats["events_published"] - observer.published_before
        if caught_up and last is not None and (last.counters, last.observed) == (now.counters, observed):
            return now
        if time.monotonic() > deadline:
            counts = dict(zip(COUNTERS, now.counters, strict=True))
            raise RuntimeError(f"the counters did not settle: {counts}, the observer had {observed}")
        last = now
        time.sleep(SETTLE_S)


@dataclass
class Row:
    """One batch: `n` invocations of one kind, and the counters' differences over it."""

    label: str
    when: str  # "first" (a new sandbox's first invocation) or "warm"
    n: int
    published: int
    delivered: int  # to the live path's subscribers (the observer's own taken out)
    publishes: int
    connections: int
    subscriptions: int
    kinds: Counter[str]
    request_ids: list[str]
    held_ms: list[float]  # the dev server's time from invoke received to result published, each

    def per(self, value: float) -> float:
        return value / self.n

    @property
    def ops(self) -> int:
        return self.published + self.delivered


def measure(label: str, when: str, n: int, observer: Observer, run: Callable[[], list[str]]) -> Row:
    """`run` (n invocations, returning their request ids) between two settled readings."""
    before = settled(observer)
    ids = run()
    after = settled(observer)
    d = {c: a - b for c, a, b in zip(COUNTERS, after.counters, before.counters, strict=True)}
    seen = after.observed - before.observed
    return Row(label, when, n, d["events_published"], d["events_delivered"] - seen, d["publishes"],
               d["connections_total"], d["subscriptions_total"], after.kinds - before.kinds,
               ids, [])  # fmt: skip


def add_held(dev: Started, rows: list[Row]) -> None:
    """Each invocation's time in the dev server (received -> published), from its dashboard API."""
    total = sum(len(r.request_ids) for r in rows)
    url = dev.info["dashboard_url"] + f"api/invocations?limit={total}&source=live"
    with urllib.request.urlopen(url, timeout=30) as response:
        timings = {r["id"]: r.get("timings", {}) for r in json.load(response)}
    for row in rows:
        for rid in row.request_ids:
            t = timings.get(rid, {})
            if "received" in t and "published" in t:
                row.held_ms.append(t["published"] - t["received"])


# ------------------------------------------------------------------------------------------ running
def invoke(client: Any, kind: Kind, n: int) -> str:
    """One invocation through boto3; its request id."""
    response = client.invoke(FunctionName=kind.function, Payload=kind.event(n))
    body = response["Payload"].read()
    if "FunctionError" in response:
        raise RuntimeError(f"{kind.function} failed: {body[:500]!r}")
    kind.check(n, json.loads(body))
    return response["ResponseMetadata"]["RequestId"]


def run_kinds(dev: Started, plan: list[Kind]) -> tuple[list[Row], int]:
    """Each kind: a new sandbox's first invocation (once a function), then its warm ones. Returns the
    rows and the connections held at the end (the observer's left out)."""
    cloud = dev.info["cloud"]
    client = lambda_client(cloud["host"])
    observer = Observer(cloud)
    rows: list[Row] = []
    numbers = iter(range(1, 1_000_000))

    def batch(kind: Kind, count: int) -> Callable[[], list[str]]:
        return lambda: [invoke(client, kind, next(numbers)) for _ in range(count)]

    try:
        observer.start()
        new = {k.function for k in plan}
        for kind in plan:
            if kind.function in new:  # its sandbox does not exist yet
                new.discard(kind.function)
                rows.append(measure(kind.label, "first", 1, observer, batch(kind, 1)))
            rows.append(measure(kind.label, "warm", kind.count, observer, batch(kind, kind.count)))
        held = settled(observer).connections_current - 1
        add_held(dev, rows)
    finally:
        observer.stop()
        client.close()
    return rows, held


# ------------------------------------------------------------------------------------------ printing
MARGIN_MS = 50.0


def near_a_threshold(held_ms: float) -> bool:
    """Whether the dev server's ack or a heartbeat nearly went out (or nearly did not)."""
    ack_ms, beat_ms = lp.ACK_DELAY_S * 1000, lp.HEARTBEAT_INTERVAL_S * 1000
    beats = round((held_ms - ack_ms) / beat_ms)
    nearest = ack_ms + max(0, beats) * beat_ms
    return abs(held_ms - nearest) < MARGIN_MS


def num(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def dollars(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 else f"${value:.7f}".rstrip("0")


def breakdown(row: Row) -> str:
    return ", ".join(f"{k} {num(row.per(row.kinds[k]))}" for k in (*KINDS, "other") if row.kinds[k])


def print_rows(rows: list[Row]) -> None:
    print(f"   {'invocation':<15}{'n':>3}{'published':>10}{'delivered':>10}{'billed ops':>11}"
          f"{'publishes':>10}{'new conn':>9}{'new subs':>9}{'dev ms':>8}  "
          "published, by message kind")  # fmt: skip
    for r in rows:
        held = f"{max(r.held_ms):.0f}" if r.held_ms else "?"
        if any(near_a_threshold(ms) for ms in r.held_ms):
            held += "*"
        cells = [r.published, r.delivered, r.ops, r.publishes, r.connections, r.subscriptions]
        widths = [10, 10, 11, 10, 9, 9]
        print(f"   {r.label + ' ' + r.when:<15}{r.n:>3}"
              + "".join(f"{num(r.per(c)):>{w}}" for c, w in zip(cells, widths, strict=True))
              + f"{held:>8}  {breakdown(r)}")  # fmt: skip
    print("   counts are per invocation. dev ms: the longest in the batch from the whole invoke received to")
    print(f"   its result published, by the dev server's clock; it acks at {lp.ACK_DELAY_S * 1000:.0f} ms, "
          f"then sends a heartbeat every {lp.HEARTBEAT_INTERVAL_S:.0f} s")  # fmt: skip
    print(f"   (*: within {MARGIN_MS:.0f} ms of one of those: another run may count an ack or heartbeat more "
          "or less)")  # fmt: skip


def print_costs(rows: list[Row], held: int) -> None:
    warm = {r.label: r for r in rows if r.when == "warm"}
    print(f"2. operations at ${OPS_PRICE:.2f} per million (published + delivered, as counted above)")
    for r in warm.values():
        ops = r.per(r.ops)
        print(f"   {r.label:<9} {num(ops):>4} ops each: {dollars(ops * OPS_PRICE):>8} "
              f"a million warm invocations")  # fmt: skip
    for r in rows:
        if r.when == "first":
            extra = r.ops - warm[r.label].per(warm[r.label].ops)
            print(f"   a sandbox's first invocation ({r.label}): {num(r.ops)} ops ({extra:+.0f} on a "
                  f"warm one), and {r.connections} connect + {r.subscriptions} subscribe, "
                  "once a sandbox")  # fmt: skip
    day, hour = WORKDAY_MIN * MINUTES_PRICE / 1e6, 60 * MINUTES_PRICE / 1e6
    print(f"3. connection-minutes at ${MINUTES_PRICE:.2f} per million")
    print(f"   the dev server's one connection, an 8-hour day: {WORKDAY_MIN} connection-minutes = "
          f"{dollars(day)}")  # fmt: skip
    print(f"   each warm sandbox, one connection as long as it lives: 60 connection-minutes = "
          f"{dollars(hour)} an hour")  # fmt: skip
    print(f"   held at the end of this run: {held} = the dev server's + {held - 1} sandboxes' (one a "
          f"function, reused; the observer's left out)")  # fmt: skip


NOTES = """4. what is counted
   the emulator's counters: events published (accepted by a publish) + events delivered (`data` frames
   written to subscribers). Not in the sum: the publish requests themselves, keep-alive frames, connect
   and subscribe requests (whether AWS meters any of those as operations: unverified).
   A message over 4 KB is compressed when zlib shrinks it, then cut into events of at most 200 KB,
   5 a publish. AWS may meter a large event as more than one operation: unverified, so every event counts
   as one here, as the emulator counts it.
   How long AWS keeps an idle sandbox, and so its connection, is not published: count its lifetime."""


# ------------------------------------------------------------------------------------------ main
def write_app(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "livelambda.toml").write_text(APP_TOML)
    (root / "funcs.py").write_text(FUNCS_PY)
    return root


def main() -> None:
    started = time.perf_counter()
    print(f"AppSync Events operations per live invocation -- Python {platform.python_version()}, "
          f"`livelambda dev --cloud` on loopback, counted by the emulator "
          f"(GET /_livelambda/stats)")  # fmt: skip
    plan = kinds()
    workdir = Path(tempfile.mkdtemp(prefix="livelambda-bench-ops-"))
    try:
        with running_dev(workdir, write_app(workdir / "ops-app")) as dev:
            rows, held = run_kinds(dev, plan)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for k in plan:
        print(f"   {k.label:<9} {k.about}")
    print("1. per invocation. first: a new sandbox's first (it connects and subscribes); warm: the same "
          "sandbox again")  # fmt: skip
    order = [k.label for k in plan]
    rows.sort(key=lambda r: (r.when != "warm", order.index(r.label)))
    print_rows(rows)
    print_costs(rows, held)
    print(NOTES)
    print(f"   ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
