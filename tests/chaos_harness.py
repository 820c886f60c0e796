"""Chaos runs, for real: `livelambda cloud --app APP --live --concurrency N` and `livelambda dev APP` as
processes, callers invoking through boto3 with Poisson-ish arrivals, and the emulator's fault controls
(a flapping AppSync, duplicated deliveries) while the dev server is restarted mid-run.

    with chaos_stack(tmp_path, concurrency=4) as stack:
        report = run_chaos(stack, Scenario(accept_s=1.5, refuse_s=1.0, fault_s=8.0))
    print(report.figures())
    assert report.violations() == []

Everything is counted, not timed: dials and connections by the emulator (`/_livelambda/stats`, sampled
all along), sandboxes by its Lambda side, handler runs by the handler itself (one line per run in
`runs.log`), outcomes by the callers, rejections by the dev server (`/api/connection`). The only
durations asserted are the bounds that are durations themselves (recovery after the faults stop; an
outcome before the deadline), measured from observable events: a caller's send and its answer, and the
schedule's own end, which the emulator reports. Every process here reads the same CLOCK_MONOTONIC
(Linux), so the test places the emulator's schedule on its own clock from the emulator's report.

The bounds (`Report.violations`), as issue #15 states them:
- connections <= sandboxes + 1 at every sample (each sandbox one connection, the dev server one);
- idle dials = 0: with no invocation, after every connection is dropped, only the dev server redials;
- dials <= the policy's formula in every span between two samples: sandboxes x N_stub(W) plus
  N_dev(W) for each dev server process alive in it (`PolicyConfig.dial_bound`);
- success share >= 0.9 x availability, over the invocations that arrived while the faults lasted;
  availability is the share of that time AppSync accepted connections and a dev server was running;
- recovery <= 2 s after the faults stop: every invocation alive then or arriving later succeeds, and
  is answered within 2 s of the stop (or of its arrival), its handler's own work aside;
- each invocation one outcome before its deadline: the handler's result or a typed `Livelambda.*`
  error, never Lambda's own timeout, within the function's timeout;
- each handler run at most once per request id, across dev server restarts, and every success ran.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devserver.cloud.faults import Flap
from devserver.live.bridge import DEV_SERVER_POLICY
from devserver.live.budget import RETURN_TRIP_MS
from devserver.live.session import cloud_file
from devserver.processes import stop_process
from stub_runtime.reconnect import PolicyConfig
from stub_runtime.settings import StubSettings
from tests.dev_fixtures import descendants
from tests.lambda_fixtures import lambda_client, wait_until

REPO = Path(__file__).resolve().parent.parent
LIVELAMBDA = REPO / ".venv" / "bin" / "livelambda"
START_TIMEOUT_S = 60.0  # two shared cores, maybe busy with other test processes
RECOVERY_S = 2.0
WAY_BACK_S = RETURN_TRIP_MS / 1000  # what the dev server keeps of a live invocation's time for the answer
SAMPLE_EVERY_S = 0.05

TIMEOUTS_S = {"work3": 3, "work10": 10}
APP_TOML = """
app = "chaos"
stage = "test"

[dashboard]
keep = 100000

[functions.work3]
handler = "funcs.work"
timeout = 3

[functions.work10]
handler = "funcs.work"
timeout = 10
"""

# One line per run, appended in one write (atomic under PIPE_BUF): the count of runs per request id.
# `*.log` is not watched, so the file does not reload the function it belongs to.
FUNCS_PY = """
import os, time

RUNS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs.log")


def work(event, context):
    fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (context.aws_request_id + "\\n").encode())
    finally:
        os.close(fd)
    time.sleep(event.get("sleep", 0))
    return {"rid": context.aws_request_id, "n": event.get("n")}
"""


@dataclass(frozen=True)
class Scenario:
    accept_s: float
    refuse_s: float
    fault_s: float  # how long the faults last (the flapping schedule's for_s)
    jitter: float = 0.3
    tail_s: float = 3.0  # load goes on this long after the faults stop (recovery)
    warmup_calls: int = 8  # successes before the faults start (sandboxes up and connected)
    callers: int = 4  # concurrent callers; at most `concurrency` per function, so nothing is throttled
    mean_gap_s: float = 0.15  # each caller's exponential pause between two invocations
    slow_share: float = 0.1  # invocations whose handler works 0.2-1.2 s (acks and heartbeats)
    restarts_at: tuple[float, ...] = (0.35,)  # dev server restarts, as fractions of fault_s
    duplicate: bool = True  # every data frame delivered twice while the faults last
    abrupt: bool = True  # the flapping drops tear TCP down (no close frame)
    seed: int = 1


@dataclass
class Call:
    function: str
    n: int
    sleep_s: float
    arrival: float  # time.monotonic() when the caller sent it
    end: float = 0.0
    request_id: str | None = None
    outcome: str = "?"  # "ok", an errorType, or "exception: ..."
    message: str = ""
    reported_s: float | None = None  # Lambda's REPORT Duration
    lambda_timeout: bool = False  # Lambda itself ended it at the timeout (REPORT "Status: timeout")

    @property
    def deadline(self) -> float:
        """The stub's own deadline (it answers before Lambda's), on the callers' clock."""
        return self.arrival + TIMEOUTS_S[self.function] - StubSettings.deadline_margin_s


@dataclass
class DevProcessRun:
    proc: subprocess.Popen[bytes]
    url: str  # dashboard base URL
    started: float  # time.monotonic() when it was launched
    ready: float  # ... when it wrote its ready file (listening, its bridge dialling)


@dataclass
class ChaosStack:
    """The app, its cloud (live mode) and its dev server, as processes."""

    root: Path
    workdir: Path
    concurrency: int
    cloud_proc: subprocess.Popen[bytes] | None = None
    cloud: dict[str, Any] = field(default_factory=dict)  # the cloud's ready file
    dev: DevProcessRun | None = None
    devs: list[DevProcessRun] = field(default_factory=list)  # every dev server run, in order
    downs: list[tuple[float, float]] = field(default_factory=list)  # (stop sent, next one ready)
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    @property
    def cloud_url(self) -> str:
        return f"http://{self.cloud['host']}"

    def start_cloud(self, *extra: str) -> None:
        ready = cloud_file(self.root)
        ready.unlink(missing_ok=True)
        args = [str(LIVELAMBDA), "cloud", "--app", str(self.root), "--live", "--port", "0",
                "--concurrency", str(self.concurrency), "--ka-interval", "1", *extra]  # fmt: skip
        with (self.workdir / "cloud.out").open("ab") as out:
            self.cloud_proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        self.cloud = _wait_json(ready, self.cloud_proc, "livelambda cloud", self.workdir / "cloud.out")

    def start_dev(self) -> DevProcessRun:
        n = len(self.devs)
        ready = self.workdir / f"dev-{n}.json"
        started = time.monotonic()
        with (self.workdir / f"dev-{n}.out").open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "devserver", "dev", str(self.root), "--port", "0",
                 "--ready-file", str(ready)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        info = _wait_json(ready, proc, "livelambda dev", self.workdir / f"dev-{n}.out")
        self.dev = DevProcessRun(proc, info["dashboard_url"].rstrip("/"), started, time.monotonic())
        self.devs.append(self.dev)
        return self.dev

    def stop_dev(self) -> None:
        if self.dev is not None:
            stop_process(self.dev.proc, signal.SIGINT, timeout=20)

    def restart_dev(self) -> None:
        """Ctrl+C the dev server, start a new one on the same app (its executed.log survives)."""
        down = time.monotonic()
        self.stop_dev()
        self.start_dev()
        assert self.dev is not None
        self.downs.append((down, self.dev.ready))

    def faults(self, **spec: Any) -> dict[str, Any]:
        response = self._http.post(f"{self.cloud_url}/_livelambda/faults", json=spec)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self._http.get(f"{self.cloud_url}/_livelambda/stats").json()

    def lambda_stats(self) -> dict[str, Any]:
        return self._http.get(f"{self.cloud_url}/_livelambda/lambda/stats").json()

    def dev_api(self, path: str) -> Any:
        assert self.dev is not None
        response = self._http.get(f"{self.dev.url}/api/{path}")
        response.raise_for_status()
        return response.json()

    def wait_for(self, predicate: Any, what: str, timeout: float = 30.0) -> Any:
        return wait_until(predicate, timeout, what)

    def runs(self) -> Counter[str]:
        path = self.root / "runs.log"
        return Counter(path.read_text().split()) if path.exists() else Counter()

    def close(self) -> None:
        started = set()
        for run in self.devs:
            started |= descendants(run.proc.pid)
            stop_process(run.proc, signal.SIGINT, timeout=20)
        if self.cloud_proc is not None:
            started |= descendants(self.cloud_proc.pid)
            stop_process(self.cloud_proc, signal.SIGTERM, timeout=20)
        for pid in started:  # nothing of a chaos run may outlive it
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self._http.close()

    def output(self) -> str:
        """The tails of every process's output, for a failure's report."""
        parts = []
        for path in sorted(self.workdir.glob("*.out")):
            tail = "\n".join(path.read_text(errors="replace").splitlines()[-40:])
            parts.append(f"--- {path.name}\n{tail}")
        return "\n".join(parts)


def _wait_json(path: Path, proc: subprocess.Popen[bytes], what: str, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(path.read_text())
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc, signal.SIGINT, timeout=20)
            raise AssertionError(f"{what} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.02)


@contextlib.contextmanager
def chaos_stack(tmp_path: Path, *, concurrency: int) -> Iterator[ChaosStack]:
    """The app in tmp_path/chaos, its cloud and a dev server, all stopped on exit."""
    root = tmp_path / "chaos"
    root.mkdir(parents=True)
    (root / "livelambda.toml").write_text(APP_TOML)
    (root / "funcs.py").write_text(FUNCS_PY)
    stack = ChaosStack(root, tmp_path, concurrency)
    try:
        stack.start_cloud()
        stack.start_dev()
        yield stack
    except BaseException:
        print(stack.output())
        raise
    finally:
        stack.close()


# ------------------------------------------------------------------------------------------ the run


@dataclass
class Report:
    scenario: Scenario
    sandboxes: int
    calls: list[Call]
    samples: list[tuple[float, int, int]]  # (time, dials so far, connections now)
    fault_start: float
    fault_end: float
    flap: Flap  # the schedule, rebuilt from its seed: the windows the emulator used
    downs: list[tuple[float, float]]
    dev_lives: list[tuple[float, float]]  # (launched, stopped or end of run) per dev server
    runs: Counter[str]
    idle_dials: int
    idle_seconds: float
    dev_records: list[dict[str, Any]]
    rejected: dict[str, int]
    duplicates_answered: int
    stub_policy: PolicyConfig = field(default_factory=PolicyConfig)
    dev_policy: PolicyConfig = DEV_SERVER_POLICY

    # -- figures
    def during(self) -> list[Call]:
        return [c for c in self.calls if self.fault_start <= c.arrival < self.fault_end]

    def success_share(self) -> float:
        during = self.during()
        return sum(c.outcome == "ok" for c in during) / max(1, len(during))

    def availability(self) -> float:
        """Share of the fault period with AppSync accepting and a dev server running."""
        lo, hi = self.fault_start, self.fault_end
        bad = self.flap.refusals(hi)
        bad += [(max(lo, a), min(hi, b)) for a, b in self.downs if b > lo and a < hi]
        return 1.0 - _union_length(bad) / (hi - lo)

    def recovery(self) -> tuple[float, list[Call]]:
        """The longest wait (less the handler's own work) of an invocation alive at the stop or sent
        after it; and those that failed although they had RECOVERY_S to spare after the stop (or
        their arrival), besides their handler's work and the way back."""
        after = [c for c in self.calls if c.end > self.fault_end]
        end = self.fault_end
        failed = [c for c in after if c.outcome != "ok"
                  and c.deadline - WAY_BACK_S - c.sleep_s - max(c.arrival, end) >= RECOVERY_S]  # fmt: skip
        waits = [c.end - max(c.arrival, self.fault_end) - c.sleep_s for c in after if c.outcome == "ok"]
        return max([0.0, *waits]), failed

    def max_dials(self, width: float) -> tuple[int, int]:
        """(most dials in a span <= width between two samples, the bound for that span)."""
        worst, worst_bound, j = 0, 0, 0
        for t, dials, _ in self.samples:
            while self.samples[j][0] < t - width:
                j += 1
            t0, d0, _ = self.samples[j]
            devs = sum(1 for a, b in self.dev_lives if a < t and b > t0)  # dev servers alive in it
            bound = self.sandboxes * self.stub_policy.dial_bound(width)
            bound += devs * self.dev_policy.dial_bound(width)
            if dials - d0 > worst or (dials - d0 == worst and bound < worst_bound):
                worst, worst_bound = dials - d0, bound
        return worst, worst_bound

    def outcomes(self) -> Counter[str]:
        return Counter(c.outcome for c in self.calls)

    def figures(self) -> str:
        s = self.scenario
        recovery, _ = self.recovery()
        share, avail = self.success_share(), self.availability()
        dials = {w: self.max_dials(w) for w in (2.0, 10.0, self.samples[-1][0] - self.samples[0][0])}
        most_conns = max(n for _, _, n in self.samples)
        lines = [
            f"scenario: accept {s.accept_s} s / refuse {s.refuse_s} s (jitter {s.jitter}) for "
            f"{s.fault_s} s, tail {s.tail_s} s, {s.callers} callers, mean gap {s.mean_gap_s} s, "
            f"restarts at {s.restarts_at}, duplicates {s.duplicate}",
            f"invocations: {len(self.calls)} ({len(self.during())} during the faults); outcomes "
            f"{dict(self.outcomes().most_common())}",
            f"success share {share:.3f} vs availability {avail:.3f} (AppSync "
            f"{self.flap.availability(self.fault_end):.3f}, dev server down "
            f"{sum(b - a for a, b in self.downs):.2f} s): ratio {share / avail:.2f} (>= 0.9)",
            f"recovery {recovery:.2f} s after the faults stopped (<= {RECOVERY_S} s)",
            "dials, most in a span vs bound: "
            + ", ".join(f"{w:.0f} s: {d} <= {b}" for w, (d, b) in dials.items()),
            f"connections: at most {most_conns} vs sandboxes {self.sandboxes} + 1",
            f"idle dials {self.idle_dials} over {self.idle_seconds:.1f} s idle",
            f"handler runs {sum(self.runs.values())} for {len(self.runs)} request ids (max "
            f"{max(self.runs.values(), default=0)} per id); dev server rejected {self.rejected}, "
            f"duplicates answered {self.duplicates_answered}",
        ]
        return "\n".join(lines)

    # -- the bounds
    def violations(self) -> list[str]:
        out: list[str] = []
        most_conns = max(n for _, _, n in self.samples)
        if most_conns > self.sandboxes + 1:
            out.append(f"connections {most_conns} > sandboxes {self.sandboxes} + 1")
        if self.idle_dials != 0:
            out.append(f"{self.idle_dials} dials while idle")
        span = self.samples[-1][0] - self.samples[0][0]
        for width in (2.0, 10.0, span):
            most, bound = self.max_dials(width)
            if most > bound:
                out.append(f"{most} dials in {width:.0f} s > bound {bound}")
        share, avail = self.success_share(), self.availability()
        if share < 0.9 * avail:
            out.append(f"success share {share:.3f} < 0.9 x availability {avail:.3f}")
        recovery, failed = self.recovery()
        if recovery > RECOVERY_S:
            out.append(f"recovery {recovery:.2f} s > {RECOVERY_S} s")
        out += [f"failed after the faults stopped: {c}" for c in failed]
        for c in self.calls:
            timeout = TIMEOUTS_S[c.function]
            # The handler's result; livelambda's typed errors; the handler's own error, which for this
            # handler can only be that its time ran out on the dev server (Lambda reports it so).
            if c.outcome not in ("ok", "Sandbox.Timedout") and not c.outcome.startswith("Livelambda."):
                out.append(f"not one of the allowed outcomes: {c}")
            elif c.lambda_timeout or c.reported_s is None or c.reported_s > timeout:
                out.append(f"no outcome within the {timeout} s timeout: {c}")
        twice = {rid: n for rid, n in self.runs.items() if n > 1}
        if twice:
            out.append(f"handlers run more than once: {twice}")
        rids = {c.request_id for c in self.calls}
        strangers = set(self.runs) - rids
        if strangers:
            out.append(f"handler runs for request ids no caller sent: {sorted(strangers)[:5]}")
        out += [f"succeeded without a handler run: {c}" for c in self.calls
                if c.outcome == "ok" and self.runs.get(c.request_id or "") != 1]  # fmt: skip
        for record in self.dev_records:
            ran = self.runs.get(record["id"])
            if record.get("status") == "ok" and ran != 1:
                out.append(f"the dev server recorded {record['id']} ok; its handler ran {ran} times")
        return out


def _union_length(spans: list[tuple[float, float]]) -> float:
    total, reach = 0.0, -math.inf
    for a, b in sorted(spans):
        if b <= reach:
            continue
        total += b - max(a, reach)
        reach = b
    return total


_REPORT = re.compile(r"REPORT RequestId: \S+\tDuration: ([\d.]+) ms")


def run_chaos(stack: ChaosStack, s: Scenario) -> Report:
    """One scenario on a running stack (see the module docstring); the figures and bounds in a Report."""
    import base64

    from botocore.exceptions import BotoCoreError, ClientError

    stop = threading.Event()
    calls: list[Call] = []
    numbers = itertools.count()
    lock = threading.Lock()

    def caller(k: int) -> None:
        rng = random.Random(s.seed * 1000 + k)
        client = lambda_client(stack.cloud_url)
        functions = sorted(TIMEOUTS_S)
        while not stop.wait(rng.expovariate(1 / s.mean_gap_s)):
            slow = rng.random() < s.slow_share
            call = Call(
                function=functions[k % len(functions)],
                n=next(numbers),
                sleep_s=round(rng.uniform(0.2, 1.2), 3) if slow else 0.0,
                arrival=time.monotonic(),
            )
            try:
                response = client.invoke(
                    FunctionName=call.function,
                    Payload=json.dumps({"n": call.n, "sleep": call.sleep_s}),
                    LogType="Tail",
                )
                payload = json.loads(response["Payload"].read())
                call.request_id = response["ResponseMetadata"]["RequestId"]
                tail = base64.b64decode(response.get("LogResult", "")).decode()
                report = _REPORT.search(tail)
                call.reported_s = float(report.group(1)) / 1000 if report else None
                call.lambda_timeout = report is not None and "Status: timeout" in tail[report.start() :]
                if payload == {"rid": call.request_id, "n": call.n}:
                    call.outcome = "ok"
                elif isinstance(payload, dict) and "errorType" in payload:
                    call.outcome, call.message = payload["errorType"], str(payload.get("errorMessage"))[:300]
                else:
                    call.outcome, call.message = "unexpected payload", repr(payload)[:300]
            except (BotoCoreError, ClientError) as exc:
                call.outcome = f"exception: {type(exc).__name__}"
                call.message = str(exc)[:300]
            call.end = time.monotonic()
            with lock:
                calls.append(call)

    samples: list[tuple[float, int, int]] = []

    def sampler() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                stats = http.get(f"{stack.cloud_url}/_livelambda/stats").json()
                dials = stats["connections_total"] + stats["connections_refused"]
                samples.append((time.monotonic(), dials, stats["connections_current"]))
                stop.wait(SAMPLE_EVERY_S)

    threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(s.callers)]
    threads.append(threading.Thread(target=sampler, daemon=True))
    for thread in threads:
        thread.start()
    try:
        stack.wait_for(lambda: sum(c.outcome == "ok" for c in list(calls)) >= s.warmup_calls, "warm-up", 60)
        flap = {"accept_s": s.accept_s, "refuse_s": s.refuse_s, "jitter": s.jitter, "for_s": s.fault_s,
                "seed": s.seed}  # fmt: skip
        answer = stack.faults(flap_connections=flap, duplicate_delivery=s.duplicate, abrupt=s.abrupt)
        snapshot = answer["faults"]["flap_connections"]
        fault_start = time.monotonic() - snapshot["elapsed_s"]
        fault_end = fault_start + s.fault_s
        for fraction in s.restarts_at:
            _until(fault_start + fraction * s.fault_s)
            stack.restart_dev()
        _until(fault_end)
        stack.faults(reset=True)  # duplicates too: the faults stop together
        _until(fault_end + s.tail_s)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    run_end = time.monotonic()

    # Idle: every connection dropped, nothing invoked. Only the dev server may dial (and must, once).
    before = stack.stats()
    dev_before = stack.dev_api("connection")
    stack.faults(drop_connections=True, abrupt=True)
    idle_from = time.monotonic()
    frames = stack.wait_for(lambda: _reconnected(stack, dev_before), "the dev server reconnected")
    # Two keep-alives after it reconnected: longer than any stub backoff (max_delay_s, 1 s) would wait.
    stack.wait_for(lambda: _frames_since(stack, frames, 2), "two keep-alives to the dev server")
    after = stack.stats()
    dev_after = stack.dev_api("connection")
    stub_idle = (after["connections_total"] + after["connections_refused"]) - (
        before["connections_total"] + before["connections_refused"]
    )
    idle_dials = stub_idle - (dev_after["attempts"] - dev_before["attempts"])

    lstats = stack.lambda_stats()["functions"]
    connection = stack.dev_api("connection")
    assert stack.dev is not None
    lives = [(run.started, stack.devs[i + 1].started if i + 1 < len(stack.devs) else run_end)
             for i, run in enumerate(stack.devs)]  # fmt: skip
    return Report(
        scenario=s,
        sandboxes=sum(f["cold_starts"] for f in lstats.values()),
        calls=sorted(calls, key=lambda c: c.arrival),
        samples=samples,
        fault_start=fault_start,
        fault_end=fault_end,
        flap=Flap(s.accept_s, s.refuse_s, start=fault_start, jitter=s.jitter, for_s=s.fault_s, seed=s.seed),
        downs=list(stack.downs),
        dev_lives=lives,
        runs=stack.runs(),
        idle_dials=idle_dials,
        idle_seconds=time.monotonic() - idle_from,
        dev_records=stack.dev_api("invocations?limit=100000"),
        rejected=connection["rejected"],
        duplicates_answered=connection.get("duplicates_answered", 0),
    )


def _until(t: float) -> None:
    """The scenario's script: wait for its next moment (on the clock every process shares)."""
    while (left := t - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))


def _reconnected(stack: ChaosStack, before: dict[str, Any]) -> float | None:
    conn = stack.dev_api("connection")
    if conn["state"] == "connected" and conn["attempts"] > before["attempts"] and conn["last_frame_at"]:
        return float(conn["last_frame_at"])
    return None


def _frames_since(stack: ChaosStack, since: float, count: int) -> bool:
    """Whether `count` keep-alive intervals have passed since `since`, as the dev server saw frames."""
    last = stack.dev_api("connection")["last_frame_at"]
    return last is not None and last - since >= count * 0.99
