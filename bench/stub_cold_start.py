"""The stub's cold start, measured side by side in one run (printed, never asserted).

1. Import time in a fresh `python -I -S` whose sys.path is the standard library plus the unpacked
   layer (`livelambda stub build`): `import stub_runtime.handler` against a bare
   `import websockets.asyncio.client` / `import websockets.client`; the layer with .pyc against the
   layer with sources only (run with -B: nothing written, as on Lambda's read-only /opt).
   `-X importtime` then names what the stub imports beyond websockets.
2. `livelambda cloud --live` on loopback with a bridge that answers at once: the first invocation of
   a new sandbox (interpreter + awslambdaric + stub import, then connect + subscribe + round trip)
   against warm invocations of a kept sandbox; and the same function with live mode off.

Variants are interleaved round by round (the machine is shared and noisy); p50 and p90 are printed.

    python -m bench.stub_cold_start
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import pct
from devserver.processes import stop_process

IMPORT_ROUNDS = 25
IMPORTTIME_RUNS = 3
COLD_ROUNDS = 10  # new sandboxes per mode
WARM_PER_ROUND = 8  # warm invocations per mode between two cold ones
START_TIMEOUT_S = 60.0

SRC = "  [sources only]"
_TIME_IMPORT = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); t = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - t)"
)


# ------------------------------------------------------------------------------------------ stats
def p50_p90(values_ms: Sequence[float]) -> str:
    return f"{pct(values_ms, 0.5):8.1f} / {pct(values_ms, 0.9):7.1f}"


# ------------------------------------------------------------------------------------------ layers
@dataclass(frozen=True)
class Layers:
    with_pyc: Path  # the unpacked layers' python/ directories
    sources_only: Path


def build_layers(workdir: Path) -> Layers:
    from devserver.layer import build_layer, unpack_layer

    pyc = build_layer(workdir / "layer.zip")
    src = build_layer(workdir / "layer-src.zip", precompile=False)
    print(f"  layer: {pyc.size / 1024:.0f} KiB, {pyc.files} files (with .pyc); sources only "
          f"{src.size / 1024:.0f} KiB, {src.files} files")  # fmt: skip
    return Layers(unpack_layer(pyc.path, workdir / "opt"), unpack_layer(src.path, workdir / "opt-src"))


# ------------------------------------------------------------------------------------------ 1. imports
@dataclass(frozen=True)
class ImportCase:
    label: str
    module: str
    layer: Path


def time_import(case: ImportCase) -> float:
    """Milliseconds `import module` takes in a fresh `python -I -S -B` (stdlib + layer only)."""
    code = _TIME_IMPORT.format(module=case.module)
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", code, str(case.layer)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
        check=True,
    )
    return float(done.stdout.strip()) * 1000


def importtime(module: str, layer: Path) -> dict[str, tuple[float, float]]:
    """`-X importtime`: module -> (self ms, cumulative ms)."""
    code = f"import sys; sys.path.insert(0, sys.argv[1]); import {module}"
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-X", "importtime", "-c", code, str(layer)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
        check=True,
    )
    out: dict[str, tuple[float, float]] = {}
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s+(.*)$", line)
        if m:
            out[m.group(3).strip()] = (int(m.group(1)) / 1000, int(m.group(2)) / 1000)
    return out


def bench_imports(layers: Layers) -> None:
    cases = [
        ImportCase("stub_runtime.handler", "stub_runtime.handler", layers.with_pyc),
        ImportCase("websockets.asyncio.client", "websockets.asyncio.client", layers.with_pyc),
        ImportCase("websockets.client", "websockets.client", layers.with_pyc),
        ImportCase(f"stub_runtime.handler{SRC}", "stub_runtime.handler", layers.sources_only),
        ImportCase(f"websockets.asyncio.client{SRC}", "websockets.asyncio.client", layers.sources_only),
    ]
    for case in cases:  # once each, unmeasured: the page cache
        time_import(case)
    samples: dict[str, list[float]] = {c.label: [] for c in cases}
    rng = random.Random(1)
    for _ in range(IMPORT_ROUNDS):
        order = cases[:]
        rng.shuffle(order)
        for case in order:
            samples[case.label].append(time_import(case))
    print(f"1. import in `python -I -S -B` (stdlib + unpacked layer), {IMPORT_ROUNDS} rounds interleaved")
    print(f"   {'import':<48} {'p50 ms':>8}   {'p90 ms':>7}")
    for case in cases:
        print(f"   {case.label:<48} {p50_p90(samples[case.label])}")
    stub = pct(samples["stub_runtime.handler"], 0.5)
    wsa = pct(samples["websockets.asyncio.client"], 0.5)
    ws = pct(samples["websockets.client"], 0.5)
    src = pct(samples[f"stub_runtime.handler{SRC}"], 0.5)
    wsa_src = pct(samples[f"websockets.asyncio.client{SRC}"], 0.5)
    print(f"   ratio stub / websockets.asyncio.client (p50)      {stub / wsa:5.2f}x   (target <= 1.30x)")
    print(f"   ratio stub / websockets.client (p50)              {stub / ws:5.2f}x")
    print(f"   ratio stub / websockets.asyncio.client, sources   {src / wsa_src:5.2f}x")
    print(f"   shipped .pyc save on the stub's import (p50)      {src - stub:5.1f} ms "
          f"({(src - stub) / src:.0%}; {src:.1f} -> {stub:.1f} ms)")  # fmt: skip

    # What the stub imports beyond websockets.asyncio.client, by self time (median of a few runs).
    runs_stub = [importtime("stub_runtime.handler", layers.with_pyc) for _ in range(IMPORTTIME_RUNS)]
    runs_ws = [importtime("websockets.asyncio.client", layers.with_pyc) for _ in range(IMPORTTIME_RUNS)]
    in_ws = set().union(*runs_ws)
    extra: dict[str, float] = {}
    for name in set().union(*runs_stub) - in_ws:
        extra[name] = statistics.median(r.get(name, (0.0, 0.0))[0] for r in runs_stub)
    total = sum(extra.values())
    ws_cum = statistics.median(r.get("websockets.asyncio.client", (0.0, 0.0))[1] for r in runs_ws)
    heavy = ", ".join(
        f"{name} {statistics.median(r.get(name, (0.0, 0.0))[1] for r in runs_ws):.1f}"
        for name in ("asyncio", "importlib.metadata", "typing", "ssl", "urllib.request")
    )
    print(f"   -X importtime, median of {IMPORTTIME_RUNS}: websockets.asyncio.client {ws_cum:.1f} ms in all")
    print(f"     of which (cumulative ms, where first imported): {heavy}")
    print(f"   the stub adds {len(extra)} modules, {total:.1f} ms self time in all; the largest:")
    for name, ms in sorted(extra.items(), key=lambda kv: -kv[1])[:10]:
        print(f"     {ms:6.2f} ms  {name}")


# ------------------------------------------------------------------------------------------ 2. live
APP_TOML = """app = "{app}"
stage = "bench"
{functions}"""
FUNCS_PY = """def echo(event, context):
    return {"local": event}
"""


@dataclass
class Cloud:
    """A `livelambda cloud` subprocess."""

    name: str
    app_dir: Path
    live: bool
    env: dict[str, str]
    api_key: str = field(default_factory=lambda: "da2-" + secrets.token_hex(13))
    proc: subprocess.Popen[bytes] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        ready = self.app_dir.parent / f"{self.name}.ready.json"
        args = [sys.executable, "-m", "devserver", "cloud", "--app", str(self.app_dir), "--port", "0",
                "--api-key", self.api_key, "--ready-file", str(ready)]  # fmt: skip
        if self.live:
            args.append("--live")
        log = (self.app_dir.parent / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.app_dir.parent / f"{self.name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"livelambda cloud ({self.name}) did not start:\n{tail}")
            time.sleep(0.02)
        self.info = json.loads(ready.read_text())

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "lambda",
            endpoint_url=f"http://{self.info['host']}",
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(retries={"total_max_attempts": 1}, read_timeout=60, connect_timeout=10),
        )


@dataclass
class Sample:
    wall_ms: float
    duration_ms: float | None  # the REPORT line's Duration
    init_ms: float | None  # the REPORT line's Init Duration (cold only)


def invoke(client: Any, function: str, n: int) -> Sample:
    payload = json.dumps({"n": n}).encode()
    t0 = time.perf_counter()
    response = client.invoke(FunctionName=function, Payload=payload, LogType="Tail")
    body = response["Payload"].read()
    wall = (time.perf_counter() - t0) * 1000
    if "FunctionError" in response:
        raise RuntimeError(f"{function} failed: {body[:500]!r}")
    result = json.loads(body)
    if result not in ({"local": {"n": n}}, {"echo": {"n": n}}):
        raise RuntimeError(f"{function} answered {result!r}")
    log = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
    duration = re.search(r"\tDuration: ([\d.]+) ms", log)
    init = re.search(r"Init Duration: ([\d.]+) ms", log)
    return Sample(
        wall,
        float(duration.group(1)) if duration else None,
        float(init.group(1)) if init else None,
    )


def write_app(root: Path, name: str, functions: Sequence[str]) -> Path:
    root.mkdir(parents=True)
    body = "".join(f'\n[functions.{f}]\nhandler = "funcs.echo"\ntimeout = 30\n' for f in functions)
    (root / "livelambda.toml").write_text(APP_TOML.format(app=name, functions=body))
    (root / "funcs.py").write_text(FUNCS_PY)
    return root


@contextmanager
def clouds(workdir: Path, layer: Path) -> Iterator[tuple[Cloud, Cloud]]:
    functions = ["warm", *(f"cold{i:02d}" for i in range(COLD_ROUNDS))]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIVELAMBDA_"))}
    env["PYTHONUNBUFFERED"] = "1"
    live = Cloud("live", write_app(workdir / "live-app", "benchlive", functions), True,
                 {**env, "LIVELAMBDA_STUB_PATH": str(layer)})  # fmt: skip
    plain = Cloud("plain", write_app(workdir / "plain-app", "benchplain", functions), False, env)
    try:
        live.start()
        plain.start()
        yield live, plain
    finally:
        live.stop()
        plain.stop()


async def bench_live(workdir: Path, layer: Path) -> None:
    from devserver.live.bridge import Bridge, Endpoint, LiveInvocation
    from devserver.live.session import load_or_create
    from stub_runtime.reconnect import PolicyConfig

    async def execute(inv: LiveInvocation) -> dict[str, Any]:
        return {"status": "ok", "response": {"echo": inv.event}}

    with clouds(workdir, layer) as (live, plain):
        session = load_or_create(live.app_dir, "benchlive", "bench")
        info = live.info
        connected = asyncio.Event()
        bridge = Bridge(
            Endpoint(info["http_url"], info["realtime_url"], "api_key", live.api_key, "us-east-1"),
            session.id,
            session.secret,
            execute,
            policy=PolicyConfig(mode="persistent", base_delay_s=0.05, max_delay_s=0.5),
            on_state=lambda s: connected.set() if s.state == "connected" else None,
        )
        task = asyncio.ensure_future(bridge.run())
        try:
            await asyncio.wait_for(connected.wait(), 30)
            live_client, plain_client = live.client(), plain.client()
            keys = ("live_cold", "live_warm", "plain_cold", "plain_warm")
            results: dict[str, list[Sample]] = {k: [] for k in keys}
            n = 0

            async def call(client: Any, function: str) -> Sample:
                nonlocal n
                n += 1
                return await asyncio.to_thread(invoke, client, function, n)

            # Unmeasured: each cloud's first request path, boto3's first call, the "warm" sandboxes.
            for _ in range(3):
                await call(live_client, "warm")
                await call(plain_client, "warm")
            for i in range(COLD_ROUNDS):
                pairs = [("live", live_client), ("plain", plain_client)]
                if i % 2:
                    pairs.reverse()
                for mode, client in pairs:
                    results[f"{mode}_cold"].append(await call(client, f"cold{i:02d}"))
                for _ in range(WARM_PER_ROUND):
                    for mode, client in pairs:
                        results[f"{mode}_warm"].append(await call(client, "warm"))
        finally:
            await bridge.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def col(key: str, attr: str) -> list[float]:
        return [getattr(s, attr) for s in results[key] if getattr(s, attr) is not None]

    print(f"2. `livelambda cloud` on loopback, bridge answering at once; {COLD_ROUNDS} new sandboxes and "
          f"{COLD_ROUNDS * WARM_PER_ROUND} warm invocations per mode, interleaved")  # fmt: skip
    print(f"   {'invocation (boto3 wall time unless said)':<60} {'p50 ms':>8}   {'p90 ms':>7}")
    rows = [
        ("live  cold: new sandbox, whole first invocation", "live_cold", "wall_ms"),
        ("  Init Duration (python + awslambdaric + stub import)", "live_cold", "init_ms"),
        ("  Duration (connect + subscribe + round trip)", "live_cold", "duration_ms"),
        ("live  warm: same sandbox, kept connection", "live_warm", "wall_ms"),
        ("  Duration", "live_warm", "duration_ms"),
        ("plain cold: live mode off, new sandbox", "plain_cold", "wall_ms"),
        ("  Init Duration (python + awslambdaric + handler import)", "plain_cold", "init_ms"),
        ("  Duration", "plain_cold", "duration_ms"),
        ("plain warm", "plain_warm", "wall_ms"),
    ]
    for label, key, attr in rows:
        print(f"   {label:<60} {p50_p90(col(key, attr))}")
    lc, lw = pct(col("live_cold", "wall_ms"), 0.5), pct(col("live_warm", "wall_ms"), 0.5)
    pc, pw = pct(col("plain_cold", "wall_ms"), 0.5), pct(col("plain_warm", "wall_ms"), 0.5)
    li, pi = pct(col("live_cold", "init_ms"), 0.5), pct(col("plain_cold", "init_ms"), 0.5)
    ld = pct(col("live_cold", "duration_ms"), 0.5)
    lwd = pct(col("live_warm", "duration_ms"), 0.5)
    print(f"   live cold / live warm (p50)                 {lc / lw:6.1f}x   (+{lc - lw:.0f} ms)")
    print(f"   live cold / plain cold (p50)                {lc / pc:6.2f}x   (+{lc - pc:.0f} ms: live mode)")
    print(f"   stub init - plain init (p50)                {li - pi:6.1f} ms  (the stub's imports)")
    print(f"   first live invoke - warm live invoke        {ld - lwd:6.1f} ms  (connect + subscribe)")
    print(f"   live warm / plain warm (p50)                {lw / pw:6.2f}x")


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    import platform

    started = time.perf_counter()
    print(f"stub cold start -- Python {platform.python_version()} ({sys.implementation.cache_tag}), "
          f"{os.cpu_count()} CPUs, p50 / p90")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="livelambda-bench-stub-"))
    try:
        layers = build_layers(workdir)
        bench_imports(layers)
        asyncio.run(bench_live(workdir, layers.with_pyc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"   ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
