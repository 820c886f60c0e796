"""A WAN between the laptop and AppSync (issue #15), measured on loopback (printed, never asserted).

In AWS the stub sits next to AppSync and the dev server is one internet round trip away. Here:

    boto3 ──▶ livelambda cloud (https/wss, 127.0.0.2:PORT) ◀── sandbox running the stub
                     ▲
                     │ bench/netem.py: DELAY_S each way (RTT 50 ms), a new connection costs its
                     │ TCP round trip, TLS its own; 127.0.0.1:PORT, dialled as `localhost:PORT`
                     ▼
              livelambda dev (the app's [endpoint] names the cloud: mode "aws")

The caller and the stub stay on loopback, next to the cloud. The proxy listens on the cloud's port
number on another loopback address, so the dev server reaches the cloud under a name the emulator
takes as its own host (`localhost:PORT`): IAM signatures and API-key auth objects name it. Both run
TLS (a test CA, bench/certs.py, trusted through `SSL_CERT_FILE`), under both auth modes: API key (the
dev server publishes over its WebSocket) and IAM (over kept-alive HTTPS, as `aws up` defaults to).

For each mode, one cloud and its sandbox: a dev server dialling the cloud itself warms the sandbox
(and gives the `direct` p50); then, through the proxy, a fresh dev server with no delay and one with
the delay, each timed on its first invocation once it is connected; then one dev server through the
proxy, switched between no delay ("loopback") and the delay ("WAN") in interleaved batches so that
the noise of a shared machine hits both alike: a small invocation SAMPLES times a link (p50), and a
~6 MB request and response BIG_SAMPLES times, the WAN then also capped at 100 Mbit/s, beside the time
the compressed bytes take at that rate.

    python -m bench wan
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.certs import LoopbackCertificates, make_certificates
from bench.live import Started, boto3_invoke, lambda_client, running_dev, start_cloud, verdict, write_app
from bench.netem import running_proxy
from bench.operations import json_records
from bench.stats import pct
from devserver.live.session import load_or_create, state_dir
from devserver.processes import stop_process
from stub_runtime import live_protocol as lp
from stub_runtime.envelope import Message, encode

DELAY_S = 0.025  # one way: RTT 50 ms
RTT_S = 2 * DELAY_S
RATE_BITS = 100e6  # the 6 MB run's cap, bits/s
SAMPLES = 60  # small invocations per link
BATCH = 10  # small invocations on one link in a row, then the other
WARMUP = 3
BIG_BYTES = 6_000_000  # of JSON, each way (Lambda's synchronous limit is 6,291,456 bytes)
BIG_SAMPLES = 5  # per link
TARGET_RTT = 1.1  # WAN p50 - loopback p50, small invocation
TARGET_FIRST_RTT = 2.0  # the first invocation after the dev server connects
CONNECTED_TIMEOUT_S = 30.0
CLOUD_HOST = "127.0.0.2"  # the proxy takes 127.0.0.1 with the same port
IAM_KEY = ("AKIDBENCHWAN", "bench-wan-secret")
MODES = ("api_key", "iam")


# ------------------------------------------------------------------------------------------ processes
def write_dev_app(root: Path, cloud_app: Path, name: str, endpoint: str, mode: str, api_key: str) -> Path:
    """The dev server's app: the echo function, the session the cloud's stubs use, and an [endpoint]
    naming the cloud at `endpoint` ("https://HOST:PORT"), as an app against real AppSync does."""
    write_app(root, name)
    auth = 'auth = "iam"\n' if mode == "iam" else f'auth = "api_key"\napi_key = "{api_key}"\n'
    ws = endpoint.replace("https://", "wss://")
    with (root / "livelambda.toml").open("a") as toml:
        toml.write(f'\n[endpoint]\nmode = "aws"\nhttp_url = "{endpoint}/event"\n'
                   f'realtime_url = "{ws}/event/realtime"\n{auth}')  # fmt: skip
    shutil.copy(cloud_app / ".livelambda" / "session.json", state_dir(root) / "session.json")
    return root


def wait_connected(dev: Started) -> None:
    """Until the dev server's AppSync connection is up and subscribed (its dashboard says so)."""
    url = dev.info["dashboard_url"] + "api/connection"
    deadline = time.monotonic() + CONNECTED_TIMEOUT_S
    while True:
        with urllib.request.urlopen(url, timeout=10) as response:
            state = json.load(response).get("state")
        if state == "connected":
            return
        if time.monotonic() > deadline or dev.proc.poll() is not None:
            raise RuntimeError(f"the dev server did not connect ({state}):\n{dev.log.read_text()[-3000:]}")
        time.sleep(0.01)


# ------------------------------------------------------------------------------------------ invoking
def big_event(n: int, records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"id": n, "data": records}).encode()


def big_invoke(client: Any, n: int, records: list[dict[str, Any]]) -> float:
    payload = big_event(n, records)
    t0 = time.perf_counter()
    response = client.invoke(FunctionName="echo", Payload=payload)
    body = response["Payload"].read()
    ms = (time.perf_counter() - t0) * 1000
    if "FunctionError" in response or len(body) < len(payload) - 100 or json.loads(body)["id"] != n:
        raise RuntimeError(f"echo answered {body[:300]!r}")
    return ms


def compressed_bytes(records: list[dict[str, Any]]) -> tuple[int, int]:
    """(request, response) bytes of the big invocation's events, as the stub and the dev server encode
    them (stub_runtime.envelope: compressed, base64, chunked)."""
    secret = secrets.token_bytes(32)
    event = json.loads(big_event(1, records))
    now = int(time.time() * 1000)
    context = {"aws_request_id": "r", "function_name": "echo", "deadline_ms": now + 30_000}
    request = encode(Message(lp.INVOKE, "s-1", "r", "sb", {"event": event, "context": context}), secret, now)
    response = encode(Message(lp.RESULT, "s-1", "r", "sb", {"status": "ok", "response": event}), secret, now)
    return sum(len(e.encode()) for e in request), sum(len(e.encode()) for e in response)


@dataclass
class Figures:
    """One auth mode's figures, ms. `direct`: a dev server dialling the cloud itself; `near`: through
    the proxy with no delay and no cap (the reference: same path, same proxy, no WAN); `wan`: through
    it with the delay (and the cap for the 6 MB runs). `first`: a fresh dev server's first invocation
    once it is connected, per link."""

    direct: list[float] = field(default_factory=list)
    near: list[float] = field(default_factory=list)
    wan: list[float] = field(default_factory=list)
    first: dict[str, float] = field(default_factory=dict)
    big_near: list[float] = field(default_factory=list)
    big_wan: list[float] = field(default_factory=list)
    link: Any = None


def bench_mode(
    workdir: Path, certs: LoopbackCertificates, mode: str, records: list[dict[str, Any]]
) -> Figures:
    name = f"benchwan{mode.replace('_', '')}"
    cloud_app = write_app(workdir / "cloud-app", name)
    load_or_create(cloud_app, name, "bench")  # the session the stubs and every dev server share
    api_key = "da2-" + secrets.token_hex(13)
    trust = {"SSL_CERT_FILE": str(certs.ca)}  # what makes the stub and the dev server trust the CA
    args = ["--live", "--host", CLOUD_HOST, "--api-key", api_key, "--iam-credentials", ":".join(IAM_KEY),
            "--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]  # fmt: skip
    if mode == "iam":
        args += ["--live-auth", "iam"]  # the sandboxes get IAM_KEY, as a role's credentials
    dev_env = {**trust, "AWS_ACCESS_KEY_ID": IAM_KEY[0], "AWS_SECRET_ACCESS_KEY": IAM_KEY[1]}
    cloud = start_cloud(workdir, cloud_app, *args, env=trust)
    figures = Figures()
    n = 0

    def invoke() -> float:
        nonlocal n
        n += 1
        return boto3_invoke(client, n)

    def dev_app(label: str, endpoint: str) -> tuple[Path, Path]:
        """(the dev server's work directory, its app) for a dev server connecting to `endpoint`."""
        (workdir / label).mkdir()
        app = write_dev_app(workdir / f"dev-{label}", cloud_app, name, endpoint, mode, api_key)
        return workdir / label, app

    try:
        port = int(cloud.info["port"])
        client = lambda_client(cloud.info["host"], scheme="https", verify=str(certs.ca))
        # A dev server dialling the cloud itself warms the sandbox (its cold start is the cloud's).
        with running_dev(*dev_app("direct", f"https://{CLOUD_HOST}:{port}"), cloud=False, env=dev_env) as dev:
            wait_connected(dev)
            for _ in range(WARMUP):
                invoke()
            figures.direct = [invoke() for _ in range(SAMPLES)]
        with running_proxy(CLOUD_HOST, port, one_way_delay_s=0.0, listen_port=port) as proxy:
            through = f"https://localhost:{port}"

            def link(wan: bool, capped: bool = False) -> None:  # read by the proxy per chunk
                proxy.one_way_delay_s = DELAY_S if wan else 0.0
                proxy.rate_bytes_per_s = RATE_BITS / 8 if capped else None

            for label, wan in (("near", False), ("wan", True)):  # a fresh dev server each
                link(wan)
                with running_dev(*dev_app(f"first-{label}", through), cloud=False, env=dev_env) as dev:
                    wait_connected(dev)
                    figures.first[label] = invoke()
            link(True)
            with running_dev(*dev_app("interleaved", through), cloud=False, env=dev_env) as dev:
                wait_connected(dev)
                for wan in (False, True):
                    link(wan)
                    for _ in range(WARMUP):
                        invoke()
                # Interleaved in batches, so the noise of a shared machine hits both links alike.
                for r in range(SAMPLES // BATCH):
                    for wan in (r % 2 == 0, r % 2 == 1):
                        link(wan)
                        (figures.wan if wan else figures.near).extend(invoke() for _ in range(BATCH))
                for r in range(BIG_SAMPLES):
                    for wan in (r % 2 == 0, r % 2 == 1):
                        link(wan, capped=wan)
                        n += 1
                        (figures.big_wan if wan else figures.big_near).append(big_invoke(client, n, records))
            figures.link = proxy.counters.copy()
        client.close()
    finally:
        stop_process(cloud.proc, timeout=20.0)
    return figures


# ------------------------------------------------------------------------------------------ printing
def rtts(ms: float) -> float:
    return ms / 1000 / RTT_S


LABELS = {"api_key": "API key: the dev server publishes over its WebSocket",
          "iam": "IAM: the dev server publishes over kept-alive HTTPS"}  # fmt: skip


def report(mode: str, fig: Figures, sizes: tuple[int, int]) -> None:
    direct, near, over = pct(fig.direct, 0.5), pct(fig.near, 0.5), pct(fig.wan, 0.5)
    added = rtts(over - near)
    first = rtts(fig.first["wan"] - fig.first["near"])
    print(f"   {LABELS[mode]}")
    print(f"     small, p50: loopback {near:5.1f} ms, WAN {over:5.1f} ms (p99 {pct(fig.wan, 0.99):.1f}): "
          f"WAN - loopback = {added:.2f} RTT (target <= {TARGET_RTT}: {verdict(added <= TARGET_RTT)}); "
          f"direct {direct:.1f} ms")  # fmt: skip
    print(f"     first after the dev server connects: loopback {fig.first['near']:5.1f} ms, WAN "
          f"{fig.first['wan']:5.1f} ms: {first:.2f} RTT more (target <= {TARGET_FIRST_RTT}: "
          f"{verdict(first <= TARGET_FIRST_RTT)}); {rtts(fig.first['wan'] - near):.2f} RTT over the "
          f"loopback p50")  # fmt: skip
    transfer_ms = (sizes[0] + sizes[1]) * 8 / RATE_BITS * 1000
    big_near, big_wan = statistics.median(fig.big_near), statistics.median(fig.big_wan)
    floor = transfer_ms + RTT_S * 1000
    each = ", ".join(f"{x:.0f}" for x in fig.big_wan)
    print(f"     6 MB, p50: loopback {big_near:5.0f} ms, WAN at 100 Mbit/s {big_wan:5.0f} ms ({each}): "
          f"{big_wan - big_near:.0f} ms more, beside {floor:.0f} ms to move the compressed bytes at "
          f"100 Mbit/s ({transfer_ms:.0f} ms) + 1 RTT: {(big_wan - big_near) / floor:.2f}x")  # fmt: skip
    link = fig.link
    print(f"     the link carried {link.connections} TCP connections (3 dev servers: WebSocket, HTTPS), "
          f"{link.bytes_up / 1e6:.1f} MB up, {link.bytes_down / 1e6:.1f} MB down")  # fmt: skip


def main() -> None:
    started = time.perf_counter()
    print(f"WAN between the dev server and AppSync -- Python {platform.python_version()}, {os.cpu_count()} "
          f"CPUs; proxy {DELAY_S * 1000:.0f} ms each way (RTT {RTT_S * 1000:.0f} ms), TLS everywhere; "
          f"{SAMPLES} small invocations (1 KB echo) a dev server, {BIG_SAMPLES} of ~{BIG_BYTES / 1e6:.0f} MB "
          f"each way")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="livelambda-bench-wan-"))
    records = json_records(BIG_BYTES - 40)
    sizes = compressed_bytes(records)
    print(f"   6 MB: {len(json.dumps(records)) / 1e6:.2f} MB of JSON each way; compressed events: request "
          f"{sizes[0] / 1e6:.2f} MB, response {sizes[1] / 1e6:.2f} MB")  # fmt: skip
    try:
        certs = make_certificates(workdir / "certs")
        for mode in MODES:
            report(mode, bench_mode(workdir / mode, certs, mode, records), sizes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("   loopback: the same dev server, proxy and TLS cloud, the proxy without delay or cap; direct:")
    print("   a dev server dialling the cloud itself. first: a fresh dev server on each link. The proxy's")
    print("   own timers add ~1 ms a round trip (0.02 RTT). 6 MB: the link's time overlaps the work at")
    print("   either end (events are parsed as they arrive), so the difference may beat the bytes' time.")
    print(f"   ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
