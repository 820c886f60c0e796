"""HTTP publishes over kept-alive connections (issue #15): the stub's `HttpPublisher` (blocking, stdlib,
one per sandbox) and the dev server's pool (`AppSyncEventsClient`, httpx), under IAM and API key; and
`livelambda cloud --tls-cert/--tls-key` (https and wss, with a test CA from bench/certs.py).

Connections are counted where they are made: a bench/netem.py proxy without delay stands in front of
`livelambda cloud` (auth objects still name the cloud's own host). Events are counted where they arrive:
a subscriber reads up to a sentinel published after the rest, so a duplicate would show."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.certs import LoopbackCertificates, make_certificates
from bench.netem import DelayProxy, running_proxy
from devserver.live.bridge import Bridge, Endpoint
from devserver.live.session import load_or_create
from stub_runtime.appsync import publishing
from stub_runtime.appsync.auth import ApiKeyAuth
from stub_runtime.appsync.blocking import BlockingConnection
from stub_runtime.appsync.client import HTTP_WARM, AppSyncEventsClient
from stub_runtime.appsync.errors import ClientClosed, ConnectFailed, HttpPublishFailed
from stub_runtime.appsync.publishing import HttpPublisher
from stub_runtime.reconnect import PolicyConfig
from tests.conftest import TEST_IAM, CloudProcess
from tests.live_fixtures import echo_executor, write_live_app
from tests.test_appsync_client import make_auth

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 15.0  # an upper bound for what takes milliseconds; never a timing assertion
N = 6
MODES = ["api_key", "iam"]


def soon() -> float:
    return time.monotonic() + WAIT_S


def channel() -> str:
    return f"/default/kept{uuid.uuid4().hex[:12]}"


def event(i: int) -> list[str]:
    return [json.dumps({"n": i})]


@pytest.fixture
def proxy(shared_cloud: CloudProcess) -> Iterator[DelayProxy]:
    """A proxy without delay in front of the shared cloud: it counts the TCP connections made."""
    with running_proxy("127.0.0.1", shared_cloud.port, one_way_delay_s=0.0, handshake=False) as p:
        yield p


def via(proxy: DelayProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}/event"


# ------------------------------------------------------------------------------------------ subscribers
@contextlib.contextmanager
def subscribed(cloud: CloudProcess, ch: str) -> Iterator[BlockingConnection]:
    conn = BlockingConnection(cloud.http_url, cloud.realtime_url, ApiKeyAuth(cloud.api_key, cloud.host))
    conn.connect(soon())
    conn.subscribe(ch, soon())
    try:
        yield conn
    finally:
        conn.close()


def received(conn: BlockingConnection, ch: str) -> list[Any]:
    """Every event on `ch` until a sentinel this publishes now (after the publishes under test)."""
    assert conn.publish(ch, ['"end"'], soon()).ok
    got = []
    while (data := conn.next_data(soon())) is not None and data.event != "end":
        got.append(data.event)
    assert data is not None, "the sentinel did not arrive"
    return got


@contextlib.asynccontextmanager
async def async_subscribed(cloud: CloudProcess, ch: str) -> AsyncIterator[Any]:
    client = AppSyncEventsClient(cloud.http_url, cloud.realtime_url, ApiKeyAuth(cloud.api_key, cloud.host))
    await client.connect()
    sub = await client.subscribe(ch)
    try:
        yield client, sub
    finally:
        await client.close()


async def async_received(subscriber: tuple[AppSyncEventsClient, Any], ch: str) -> list[Any]:
    client, sub = subscriber
    assert (await client.publish(ch, ['"end"'])).ok
    got = []
    while (item := await asyncio.wait_for(sub.get(), WAIT_S)) != "end":
        got.append(item)
    return got


async def until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------------------------------ the stub
@pytest.mark.parametrize("mode", MODES)
def test_stub_publishes_share_one_kept_connection(
    shared_cloud: CloudProcess, proxy: DelayProxy, mode: str
) -> None:
    publisher = HttpPublisher(via(proxy))
    auth = make_auth(shared_cloud, mode)
    ch = channel()
    try:
        with subscribed(shared_cloud, ch) as sub:
            for i in range(N):
                successful, failed = publisher.publish(auth, ch, event(i), WAIT_S)
                assert [e.index for e in successful] == [0] and not failed
            assert received(sub, ch) == [{"n": i} for i in range(N)]
    finally:
        publisher.close()
    assert proxy.counters.connections == 1
    assert publisher.stats == {"connections": 1, "requests": N, "reopened": 0}


def test_stub_keeps_its_http_connection_across_websocket_connections(
    shared_cloud: CloudProcess, proxy: DelayProxy
) -> None:
    """IAM publishes over HTTP: the sandbox's publisher outlives each BlockingConnection (a thawed
    sandbox dials a new WebSocket; its HTTP connection stays)."""
    publisher = HttpPublisher(via(proxy))
    auth = make_auth(shared_cloud, "iam")
    ch = channel()
    with subscribed(shared_cloud, ch) as sub:
        for i in range(N):
            conn = BlockingConnection(via(proxy), shared_cloud.realtime_url, auth, http_publisher=publisher)
            assert conn.publish(ch, event(i), soon()).ok
            conn.close()  # not the sandbox's publisher
        assert received(sub, ch) == [{"n": i} for i in range(N)]
    publisher.close()
    assert proxy.counters.connections == 1 and publisher.stats["requests"] == N


@pytest.mark.parametrize("mode", MODES)
def test_stub_reopens_a_dropped_connection_once(
    shared_cloud: CloudProcess, proxy: DelayProxy, mode: str
) -> None:
    publisher = HttpPublisher(via(proxy))
    auth = make_auth(shared_cloud, mode)
    ch = channel()
    with subscribed(shared_cloud, ch) as sub:
        assert not publisher.publish(auth, ch, event(1), WAIT_S)[1]
        assert proxy.call(proxy.drop_connections()) == 1  # reset, as after a long Lambda freeze
        assert not publisher.publish(auth, ch, event(2), WAIT_S)[1]
        assert received(sub, ch) == [{"n": 1}, {"n": 2}]  # each once
    publisher.close()
    assert proxy.counters.connections == 2
    assert publisher.stats == {"connections": 2, "requests": 2, "reopened": 1}


class ScriptedHttp:
    """A bare HTTP/1.1 server in a thread. `script[k]` says what connection k does with each request it
    reads, in order: "answer" (200, a publish answer, kept alive) or "drop" (close without answering);
    after its script, or when the client closes it, the next connection is served. Counts connections
    and requests."""

    ANSWER = b'{"failed":[],"successful":[{"identifier":"x","index":0}]}'

    def __init__(self, script: list[list[str]]) -> None:
        self.script = script
        self.connections = 0
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/event"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for actions in self.script:
            conn, _ = self.sock.accept()
            self.connections += 1
            with conn, conn.makefile("rb") as reader:
                for action in actions:
                    length, line = 0, reader.readline()
                    if not line:
                        break  # the client closed it
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    reader.read(length)
                    self.requests += 1
                    if action == "drop":
                        break
                    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                    conn.sendall(head % len(self.ANSWER) + self.ANSWER)

    def close(self) -> None:
        self.sock.close()


def test_stub_sends_again_once_when_a_kept_connection_dies_under_the_request() -> None:
    """The server closes a kept connection as the request arrives (no answer): once more, on a new one."""
    server = ScriptedHttp([["answer", "drop"], ["answer"]])
    publisher = HttpPublisher(server.url)
    auth = ApiKeyAuth("k", "h")
    try:
        assert publisher.publish(auth, "/default/a", event(1), WAIT_S)[0]
        assert publisher.publish(auth, "/default/a", event(2), WAIT_S)[0]
    finally:
        publisher.close()
        server.close()
    assert (server.connections, server.requests) == (2, 3)
    assert publisher.stats == {"connections": 2, "requests": 2, "reopened": 1}


def test_stub_does_not_trust_a_connection_idle_past_max_idle() -> None:
    """After a long freeze a kept connection may be a black hole (no FIN, no reset): past max_idle_s
    the stub opens a new one instead of sending into it."""
    now = [0.0]
    server = ScriptedHttp([["answer", "answer", "answer"], ["answer"]])  # the first one stays open
    publisher = HttpPublisher(server.url, max_idle_s=30.0, clock=lambda: now[0])
    auth = ApiKeyAuth("k", "h")
    try:
        for step in (0.0, 30.0, 30.5):  # kept (idle 0 s), kept (idle 30 s: not past), new (idle 30.5 s)
            now[0] += step
            assert publisher.publish(auth, "/default/a", event(1), WAIT_S)[0]
    finally:
        publisher.close()
        server.close()
    assert (server.connections, server.requests) == (2, 3)
    assert publisher.stats == {"connections": 2, "requests": 3, "reopened": 1}


def test_stub_never_sends_again_on_a_new_connection_that_fails() -> None:
    server = ScriptedHttp([["drop"]])
    publisher = HttpPublisher(server.url)
    try:
        with pytest.raises(HttpPublishFailed, match=r"HTTP publish to .* failed"):
            publisher.publish(ApiKeyAuth("k", "h"), "/default/a", event(1), WAIT_S)
        server.thread.join(WAIT_S)
    finally:
        publisher.close()
        server.close()
    assert (server.connections, server.requests) == (1, 1)
    assert publisher.stats["reopened"] == 0


def test_stub_import_stays_stdlib_only() -> None:
    """The stub's layer has no httpx: importing its clients (and publishing over HTTP) must not need it."""
    code = (
        "import sys, stub_runtime.handler, stub_runtime.appsync.client, stub_runtime.appsync.publishing\n"
        "assert 'httpx' not in sys.modules and 'http.client' not in sys.modules, sorted(sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------------------ the dev server
@pytest.mark.parametrize("mode", MODES)
async def test_dev_server_publishes_share_one_kept_connection(
    shared_cloud: CloudProcess, proxy: DelayProxy, mode: str
) -> None:
    client = AppSyncEventsClient(via(proxy), shared_cloud.realtime_url, make_auth(shared_cloud, mode))
    ch = channel()
    try:
        async with async_subscribed(shared_cloud, ch) as subscriber:
            for i in range(N):
                assert (await client.publish_http(ch, event(i))).ok
            assert await async_received(subscriber, ch) == [{"n": i} for i in range(N)]
    finally:
        await client.close()
    assert proxy.counters.connections == 1


async def test_dev_server_pool_takes_concurrent_publishes_on_its_warm_connections(
    shared_cloud: CloudProcess, proxy: DelayProxy
) -> None:
    client = AppSyncEventsClient(via(proxy), shared_cloud.realtime_url, make_auth(shared_cloud, "iam"))
    ch = channel()
    try:
        await client.warm_http()
        assert proxy.counters.connections == HTTP_WARM
        async with async_subscribed(shared_cloud, ch) as subscriber:
            for i in range(0, N, HTTP_WARM):  # a result and an ack at once, say
                both = (client.publish_http(ch, event(i + k)) for k in range(HTTP_WARM))
                results = await asyncio.gather(*both)
                assert all(r.ok for r in results)
            got = await async_received(subscriber, ch)
        assert sorted(e["n"] for e in got) == list(range(N))
    finally:
        await client.close()
    assert proxy.counters.connections == HTTP_WARM


@pytest.mark.parametrize(("mode", "warm"), [("api_key", 0), ("iam", HTTP_WARM)])
async def test_connect_warms_the_http_pool_only_when_publishes_go_over_http(
    shared_cloud: CloudProcess, proxy: DelayProxy, mode: str, warm: int
) -> None:
    client = AppSyncEventsClient(via(proxy), shared_cloud.realtime_url, make_auth(shared_cloud, mode))
    try:
        await client.connect()
        await client.subscribe(channel())  # a round trip after the warm-up began
        await until(lambda: proxy.counters.connections >= warm, "the warm-up's connections")
        assert proxy.counters.connections == warm
    finally:
        await client.close()


@pytest.mark.parametrize("mode", MODES)
async def test_dev_server_reopens_a_dropped_connection(
    shared_cloud: CloudProcess, proxy: DelayProxy, mode: str
) -> None:
    client = AppSyncEventsClient(via(proxy), shared_cloud.realtime_url, make_auth(shared_cloud, mode))
    ch = channel()
    try:
        async with async_subscribed(shared_cloud, ch) as subscriber:
            assert (await client.publish_http(ch, event(1))).ok
            assert await asyncio.to_thread(proxy.call, proxy.drop_connections()) == 1
            assert (await client.publish_http(ch, event(2))).ok
            assert await async_received(subscriber, ch) == [{"n": 1}, {"n": 2}]
    finally:
        await client.close()
    assert proxy.counters.connections == 2


async def test_dev_server_pool_closes_with_the_client(shared_cloud: CloudProcess, proxy: DelayProxy) -> None:
    client = AppSyncEventsClient(via(proxy), shared_cloud.realtime_url, make_auth(shared_cloud, "iam"))
    assert (await client.publish_http(channel(), event(1))).ok
    await client.close()
    with pytest.raises(ClientClosed):
        await client.publish_http(channel(), event(2))
    assert proxy.counters.connections == 1


def test_cloud_answers_a_cors_preflight_and_publishes_nothing(shared_cloud: CloudProcess) -> None:
    """What the dev server opens its pooled connections with: `OPTIONS /event`, no auth."""
    before = shared_cloud.stats()["publishes"]
    response = shared_cloud._client().options(shared_cloud.http_url)
    assert response.status_code == 200 and "POST" in response.headers["access-control-allow-methods"]
    assert shared_cloud.stats()["publishes"] == before


# ------------------------------------------------------------------------------------------ TLS
@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCertificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


class TlsCloud(CloudProcess):
    """`livelambda cloud --tls-cert --tls-key` on `address`, trusting `ca` for its own requests."""

    address: str = "127.0.0.1"
    ca: Path | None = None

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"https://{self.host}"

    @property
    def realtime_url(self) -> str:
        return f"wss://{self.host}/event/realtime"

    def _client(self) -> Any:
        import httpx

        if self._http is None:
            self._http = httpx.Client(timeout=10, verify=ssl.create_default_context(cafile=str(self.ca)))
        return self._http


def tls_cloud(workdir: Path, certs: LoopbackCertificates, *args: str, address: str = "127.0.0.1") -> TlsCloud:
    workdir.mkdir(parents=True, exist_ok=True)
    cloud = TlsCloud(workdir, extra_args=("--tls-cert", str(certs.cert), "--tls-key", str(certs.key),
                                          "--host", address, *args))  # fmt: skip
    cloud.address, cloud.ca = address, certs.ca
    cloud.start()
    return cloud


def test_cloud_serves_wss_and_https(tmp_path: Path, certs: LoopbackCertificates) -> None:
    cloud = tls_cloud(tmp_path / "cloud", certs)
    try:
        ready = json.loads((cloud.workdir / "ready.json").read_text())
        assert (ready["http_url"], ready["realtime_url"]) == (cloud.http_url, cloud.realtime_url)
        trusted = certs.client_context()
        ch = channel()
        sub = BlockingConnection(cloud.http_url, cloud.realtime_url, make_auth(cloud, "api_key"),
                                 ssl_context=trusted)  # fmt: skip
        sub.connect(soon())
        sub.subscribe(ch, soon())
        publisher = HttpPublisher(cloud.http_url, ssl_context=trusted)
        try:
            for i in range(N):
                assert not publisher.publish(make_auth(cloud, "iam"), ch, event(i), WAIT_S)[1]
            assert received(sub, ch) == [{"n": i} for i in range(N)]
            assert publisher.stats["connections"] == 1
        finally:
            publisher.close()
            sub.close()
        # Not trusted: a handshake failure, said so; plain HTTP on the TLS port gets no answer.
        untrusted = BlockingConnection(cloud.http_url, cloud.realtime_url, make_auth(cloud, "api_key"),
                                       ssl_context=ssl.create_default_context())  # fmt: skip
        with pytest.raises(ConnectFailed) as info:
            untrusted.connect(soon())
        assert info.value.reason == "handshake" and "certificate" in str(info.value).lower()
        plain = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=WAIT_S)
        with pytest.raises((http.client.HTTPException, OSError)):
            plain.request("POST", "/event", b"{}")
            plain.getresponse().read()
        plain.close()
    finally:
        cloud.close()


SSL_CERT_FILE_SCRIPT = """
import asyncio, json, sys, time
from stub_runtime.appsync.auth import IamAuth
from stub_runtime.appsync.blocking import BlockingConnection
from stub_runtime.appsync.client import AppSyncEventsClient

http_url, realtime_url, host, akid, secret = sys.argv[1:]
auth = IamAuth.from_keys(host, "us-east-1", akid, secret)
conn = BlockingConnection(http_url, realtime_url, auth)  # the stub's client: default context
conn.connect(time.monotonic() + 15)
conn.subscribe("/default/certfile", time.monotonic() + 15)
assert conn.publish("/default/certfile", ['"stub"'], time.monotonic() + 15).ok  # https, kept
assert conn.next_data(time.monotonic() + 15).event == "stub"

async def dev_server():
    client = AppSyncEventsClient(http_url, realtime_url, auth)  # the dev server's: default context
    await client.connect()
    assert (await client.publish("/default/certfile", ['"dev"'])).ok  # https, from the pool
    await client.close()

asyncio.run(dev_server())
assert conn.next_data(time.monotonic() + 15).event == "dev"
conn.close()
print("ok")
"""


def test_both_clients_trust_the_ca_named_by_ssl_cert_file(
    tmp_path: Path, certs: LoopbackCertificates
) -> None:
    """The standard way to tell a Python program which CA to trust: wss and https, in both clients."""
    cloud = tls_cloud(tmp_path / "cloud", certs)
    try:
        urls = [cloud.http_url, cloud.realtime_url, cloud.host]
        args = [*urls, TEST_IAM.access_key_id, TEST_IAM.secret_access_key]
        run = [sys.executable, "-c", SSL_CERT_FILE_SCRIPT, *args]
        env = {**os.environ, "SSL_CERT_FILE": str(certs.ca)}
        done = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
        env.pop("SSL_CERT_FILE")  # without it, the test CA is unknown
        done = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "certificate" in done.stderr.lower()
    finally:
        cloud.close()


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize(("mode", "dev_connections"), [("api_key", 1), ("iam", 1 + HTTP_WARM)])
async def test_live_invocations_over_tls_keep_the_dev_servers_connections(
    tmp_path: Path,
    certs: LoopbackCertificates,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    dev_connections: int,
) -> None:
    """`livelambda cloud --live` over TLS (the stubs signing with IAM or an API key), a dev server's
    bridge on the other side of a proxy: every invocation answered, and the dev server's side of the
    link holds its WebSocket (and, under IAM, its warm HTTPS connections) whatever their number."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))  # the cloud's sandboxes inherit it
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_IAM.access_key_id)  # the bridge signs with these
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_IAM.secret_access_key)
    monkeypatch.setattr(publishing, "_tls_context", certs.client_context())  # this process's default
    app = write_live_app(tmp_path / "app")
    session = load_or_create(app.root, app.app, app.stage)
    live_auth = ["--live-auth", "iam"] if mode == "iam" else []
    # The cloud on 127.0.0.2, the proxy on 127.0.0.1 with the same port: the bridge dials it as
    # `localhost:PORT`, a host the emulator takes as its own.
    args = ("--app", str(app.root), "--live", *live_auth)
    cloud = await asyncio.to_thread(tls_cloud, tmp_path / "cloud", certs, *args, address="127.0.0.2")
    bridge = None
    task = None
    try:
        with running_proxy("127.0.0.2", cloud.port, one_way_delay_s=0.0, handshake=False,
                           listen_port=cloud.port) as proxy:  # fmt: skip
            through = f"localhost:{cloud.port}"
            endpoint = Endpoint(f"https://{through}/event", f"wss://{through}/event/realtime", mode,
                                cloud.api_key if mode == "api_key" else None, cloud.region)  # fmt: skip
            connected = asyncio.Event()
            bridge = Bridge(
                endpoint, session.id, session.secret, echo_executor,
                policy=PolicyConfig(mode="persistent", base_delay_s=0.05, max_delay_s=0.5),
                on_state=lambda s: connected.set() if s.state == "connected" else None,
            )  # fmt: skip
            task = asyncio.ensure_future(bridge.run())
            await asyncio.wait_for(connected.wait(), WAIT_S)
            client = _https_lambda_client(cloud.base_url, certs.ca)
            for i in range(N):
                payload = json.dumps({"i": i})
                response = await asyncio.to_thread(client.invoke, FunctionName="echo", Payload=payload)
                assert "FunctionError" not in response
                assert json.loads(response["Payload"].read())["echo"] == {"i": i}
            assert proxy.counters.connections == dev_connections
            assert proxy.counters.resets == 0
    finally:
        if bridge is not None:
            await bridge.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await asyncio.to_thread(cloud.close)


def _https_lambda_client(url: str, ca: Path) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x",
        verify=str(ca), config=Config(retries={"total_max_attempts": 1}, read_timeout=60),
    )  # fmt: skip
