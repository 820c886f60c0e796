"""No server we run can be made to hold a connection for nothing (issue #15, item 6): a request that
does not arrive whole in time, a silent connection, a WebSocket that never says `connection_init` are
closed after their timeout (devserver/servers/limits.py), connections beyond a cap are refused with a log
line, and what waits legitimately is left alone: a worker's `/invocation/next` long poll, a slow Lambda
invoke, the dashboard's live feed, an initialized AppSync connection. And one AppSync connection holds
at most 100 subscriptions, as in AWS.

Against each server: a worker's Runtime API (in-process), and in real processes the cloud's HTTP
endpoints and realtime WebSocket and the dev server's dashboard, with short timeouts from the
environment. Closes are observed by the clients (end of file, a close frame) and counted; nothing
waits a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from devserver.cloud.appsync_emulator import MAX_SUBSCRIPTIONS_PER_CONNECTION
from devserver.runtime import InvocationRequest
from devserver.runtime.runtime_api import RuntimeApiServer
from devserver.servers.limits import INIT_TIMEOUT_ENV, MAX_CONNECTIONS_ENV, REQUEST_TIMEOUT_ENV, ServerLimits
from tests.conftest import CloudProcess
from tests.dev_fixtures import HELLO, DevProcess, running_dev
from tests.lambda_fixtures import async_wait_until

EACH = 10  # bad connections of each kind, per server
NEXT = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
CLOSED_WITHIN_S = 30.0  # a bound on a failing test, not a wait: every close is observed as it happens


# -- bad clients -------------------------------------------------------------------------------------


def bad_requests(path: bytes) -> dict[str, bytes]:
    """What a misbehaving local client sends, by kind: nothing; half the headers; whole headers and
    half the body."""
    return {
        "silent": b"",
        "half headers": b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",
        "half body": b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{",
    }


class Bad:
    """A connection that sent `data` and then nothing; `closed()` waits for the server to close it."""

    def __init__(self, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.kind, self.reader, self.writer = kind, reader, writer

    @classmethod
    async def open(cls, port: int, kind: str, data: bytes) -> Bad:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if data:
            writer.write(data)
            await writer.drain()
        return cls(kind, reader, writer)

    async def closed(self) -> bytes:
        """What the server sent before closing (b"" or a 408)."""
        got = b""
        try:
            while chunk := await asyncio.wait_for(self.reader.read(65536), CLOSED_WITHIN_S):
                got += chunk
        except ConnectionResetError:
            pass
        self.writer.close()
        return got


async def open_bad(port: int, path: bytes) -> list[Bad]:
    return [
        await Bad.open(port, kind, data) for kind, data in bad_requests(path).items() for _ in range(EACH)
    ]


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One whole response (headers, then a body of Content-Length); its head."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


async def exchange(port: int, request: bytes) -> bytes:
    """A whole request on a fresh connection; the answer's status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return line


# -- a worker's Runtime API --------------------------------------------------------------------------


class PollingSandbox:
    """Holds each `/invocation/next` until the test delivers an event, as a sandbox waits for one."""

    def __init__(self) -> None:
        self.polls: list[Callable[[InvocationRequest], None]] = []

    def next_invocation(self, deliver: Callable[[InvocationRequest], None]) -> Callable[[], None]:
        self.polls.append(deliver)
        return lambda: self.polls.remove(deliver) if deliver in self.polls else None

    def invocation_response(self, request_id: str, body: bytes) -> bool:
        return True

    def invocation_error(self, request_id: str, body: bytes, error_type: str | None) -> bool:
        return True

    def init_error(self, body: bytes, error_type: str | None) -> None:
        pass


async def test_runtime_api_closes_what_never_arrives_and_keeps_the_long_poll() -> None:
    sandbox = PollingSandbox()
    server = RuntimeApiServer(sandbox, request_timeout_s=0.5, max_connections=100)
    await server.start()
    try:
        # The runtime's long poll, whole: it waits however long the next event takes.
        poll_reader, poll_writer = await asyncio.open_connection("127.0.0.1", server.port)
        poll_writer.write(NEXT)
        await async_wait_until(lambda: sandbox.polls, what="the long poll is registered")
        # A connection idle after a whole exchange, as the runtime's own is while its handler runs.
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        idle_writer.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(idle_reader)).startswith(b"HTTP/1.1 404")

        bad = await open_bad(server.port, b"/2018-06-01/runtime/invocation/r-1/response")
        # Whole requests between them are answered at once.
        whole = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
        answers = [await exchange(server.port, whole) for _ in range(EACH)]
        assert all(a.startswith(b"HTTP/1.1 404") for a in answers), answers
        said = await asyncio.gather(*(b.closed() for b in bad))
        assert said == [b""] * len(bad)  # closed, every one of them
        assert server.timed_out.total == len(bad) == 3 * EACH

        # The long poll outlived all their deadlines, and still gets its event.
        assert len(sandbox.polls) == 1
        sandbox.polls[0](InvocationRequest(payload=b'{"late": true}', request_id="r-1", trace_id="Root=1"))
        head = await asyncio.wait_for(poll_reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 OK") and b"lambda-runtime-aws-request-id: r-1" in head
        assert await poll_reader.readexactly(len(b'{"late": true}')) == b'{"late": true}'
        # And the idle one is still open.
        idle_writer.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(idle_reader)).startswith(b"HTTP/1.1 404")
        poll_writer.close()
        idle_writer.close()
    finally:
        await server.close()


async def test_runtime_api_refuses_connections_over_its_cap(caplog: pytest.LogCaptureFixture) -> None:
    server = RuntimeApiServer(PollingSandbox(), request_timeout_s=1.0, max_connections=4)
    await server.start()
    try:
        silent = [await Bad.open(server.port, "silent", b"") for _ in range(4)]
        with caplog.at_level(logging.WARNING, logger="livelambda.runtime_api"):
            over = await Bad.open(server.port, "over", b"")
            assert (await over.closed()).startswith(b"HTTP/1.1 503 Service Unavailable")
        assert server.refused.total == 1
        assert f"Runtime API {server.address}: 1 connection(s) refused over its cap" in caplog.text
        assert [await s.closed() for s in silent] == [b""] * 4  # their deadline
        answer = await exchange(server.port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 404")  # room again
    finally:
        await server.close()


def test_limits_come_from_the_environment() -> None:
    limits = ServerLimits.from_env(
        {REQUEST_TIMEOUT_ENV: "0.5", INIT_TIMEOUT_ENV: "2", MAX_CONNECTIONS_ENV: "7"}
    )
    assert (limits.request_timeout_s, limits.init_timeout_s, limits.max_connections) == (0.5, 2.0, 7)
    assert ServerLimits.from_env({}) == ServerLimits()
    with pytest.raises(ValueError, match=MAX_CONNECTIONS_ENV):
        ServerLimits.from_env({MAX_CONNECTIONS_ENV: "0"})


# -- the cloud and the dashboard, in real processes --------------------------------------------------


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every process the test starts inherits them (`livelambda dev` passes them to its cloud)."""
    monkeypatch.setenv(REQUEST_TIMEOUT_ENV, "1")
    monkeypatch.setenv(INIT_TIMEOUT_ENV, "1")


@pytest.fixture
def dev(tmp_path: Path, short_timeouts: None) -> Iterator[DevProcess]:
    with running_dev(tmp_path, hello=HELLO.format(version="v1")) as process:
        yield process


def realtime_subprotocols(info: dict[str, Any]) -> list[str]:
    from tests.conftest import SUBPROTOCOL, auth_subprotocol

    return [SUBPROTOCOL, auth_subprotocol({"x-api-key": info["api_key"], "host": info["host"]})]


async def never_initialized(url: str, subprotocols: list[str]) -> int | None:
    """A WebSocket that upgrades and says nothing: its close code once the server closes it."""
    async with connect(url, subprotocols=subprotocols, open_timeout=10) as ws:  # type: ignore[arg-type]
        try:
            while True:
                await asyncio.wait_for(ws.recv(), CLOSED_WITHIN_S)
        except ConnectionClosed:
            pass
        return ws.close_code


async def initialized(url: str, subprotocols: list[str]) -> ClientConnection:
    ws = await connect(url, subprotocols=subprotocols, open_timeout=10)  # type: ignore[arg-type]
    await ws.send(json.dumps({"type": "connection_init"}))
    while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "connection_ack":
        pass
    return ws


def test_the_cloud_closes_what_never_arrives_and_serves_the_rest(dev: DevProcess) -> None:
    info = dev.info["cloud"]
    port = int(info["port"])
    slow: dict[str, Any] = {}

    def slow_invoke() -> None:  # whole, then running twice the request timeout: never cut
        slow["payload"] = dev.invoke("hello", {"sleep": 2, "name": "slow"})[1]

    async def scenario() -> tuple[list[bytes], list[int | None], dict[str, Any]]:
        url, protocols = info["realtime_url"], realtime_subprotocols(info)
        quiet = await initialized(url, protocols)  # idle, but initialized: legitimate
        bad = await open_bad(port, b"/event")
        uninitialized = [asyncio.ensure_future(never_initialized(url, protocols)) for _ in range(EACH)]
        # Valid traffic while they hang: live invocations through this very cloud.
        for i in range(3):
            assert (await asyncio.to_thread(dev.invoke, "hello", {"name": f"n{i}"}))[1]["version"] == "v1"
        said = await asyncio.gather(*(b.closed() for b in bad))
        codes = await asyncio.gather(*uninitialized)
        # The idle initialized connection outlived them all and still works.
        sub_id = str(uuid.uuid4())
        auth = {"x-api-key": info["api_key"], "host": info["host"]}
        frame = {"type": "subscribe", "id": sub_id, "channel": "/default/x", "authorization": auth}
        await quiet.send(json.dumps(frame))
        while (reply := json.loads(await asyncio.wait_for(quiet.recv(), 10)))["type"] == "ka":
            pass
        await quiet.close()
        return said, codes, reply

    thread = threading.Thread(target=slow_invoke)
    thread.start()
    said, codes, reply = asyncio.run(scenario())
    thread.join(60)

    kinds = [kind for kind in bad_requests(b"/") for _ in range(EACH)]
    timed_out = [k for k, s in zip(kinds, said, strict=True) if s == b"" or s.startswith(b"HTTP/1.1 408")]
    assert len(timed_out) == 3 * EACH, list(zip(kinds, said, strict=True))
    # A request no app has seen is told why; one whose headers were whole is just closed.
    assert all(s.startswith(b"HTTP/1.1 408") for k, s in zip(kinds, said, strict=True) if k != "half body")
    assert codes == [1000] * EACH  # closed as the service closes, even on failure
    assert reply == {"type": "subscribe_success", "id": reply["id"]}
    assert slow["payload"]["message"] == "Hello, slow!"
    # The live path (the dev server's own initialized connection, idle in between) still works.
    assert dev.invoke("hello", {"name": "after"})[1]["message"] == "Hello, after!"
    log = (dev.app / ".livelambda" / "cloud.log").read_text(errors="replace")
    assert "whose request was not whole within 1 s (LIVELAMBDA_REQUEST_TIMEOUT_S)" in log
    assert "sent no connection_init within 1 s: closed" in log


def test_the_dashboard_closes_what_never_arrives_and_keeps_its_live_feed(dev: DevProcess) -> None:
    port = int(dev.info["port"])

    async def scenario() -> tuple[list[bytes], list[int], str]:
        client = httpx.AsyncClient(base_url=dev.dashboard_url, timeout=30)
        async with client, client.stream("GET", "api/feed") as feed:
            lines = feed.aiter_lines()
            assert (await anext(lines)).startswith("retry:")
            bad = await open_bad(port, b"/api/invocations/x/replay")
            statuses = [(await client.get("api/functions")).status_code for _ in range(EACH)]
            said = await asyncio.gather(*(b.closed() for b in bad))
            # The feed outlived them: an invocation now still shows up on it.
            await asyncio.to_thread(dev.invoke, "hello", {"name": "feed"})
            seen = ""
            while '"function":"hello"' not in seen.replace(" ", ""):
                seen = await asyncio.wait_for(anext(lines), 30)
            return said, statuses, seen

    said, statuses, seen = asyncio.run(scenario())
    assert statuses == [200] * EACH
    assert len(said) == 3 * EACH
    kinds = [kind for kind in bad_requests(b"/") for _ in range(EACH)]
    assert all(s.startswith(b"HTTP/1.1 408") for k, s in zip(kinds, said, strict=True) if k != "half body")
    assert all(s == b"" for k, s in zip(kinds, said, strict=True) if k == "half body")
    assert seen.startswith("data: ")


def test_the_cloud_refuses_connections_over_its_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_CONNECTIONS_ENV, "12")
    monkeypatch.setenv(REQUEST_TIMEOUT_ENV, "1")
    cloud = CloudProcess(tmp_path / "cloud")
    cloud.workdir.mkdir()
    cloud.start()
    try:

        async def scenario() -> tuple[list[bytes], list[bytes], int]:
            silent = [await Bad.open(cloud.port, "silent", b"") for _ in range(12)]
            over = [await Bad.open(cloud.port, "over", b"") for _ in range(EACH)]
            refused = await asyncio.gather(*(b.closed() for b in over))
            timed_out = await asyncio.gather(*(b.closed() for b in silent))
            async with httpx.AsyncClient(timeout=10) as client:  # room again: served
                body = {"channel": "/default/x", "events": ['"e"']}
                response = await client.post(cloud.http_url, json=body, headers=cloud.api_key_auth())
            return refused, timed_out, response.status_code

        refused, timed_out, status = asyncio.run(scenario())
    finally:
        cloud.close()
    assert all(r.startswith(b"HTTP/1.1 503 Service Unavailable") for r in refused), refused
    assert all(t.startswith(b"HTTP/1.1 408") for t in timed_out), timed_out
    assert status == 200
    out = cloud.output()
    assert "livelambda cloud on port" in out
    assert "12 connections open, its cap (LIVELAMBDA_MAX_CONNECTIONS)" in out
    assert "refused 1 new one(s)" in out  # the first of the burst at once; the rest counted, not logged each


# -- subscriptions per connection --------------------------------------------------------------------


async def test_one_connection_holds_at_most_100_subscriptions(shared_cloud: CloudProcess) -> None:
    auth = shared_cloud.api_key_auth()
    ws = await initialized(shared_cloud.realtime_url, shared_cloud.subprotocols())
    try:

        async def subscribe(sub_id: str, channel: str) -> dict[str, Any]:
            frame = {"type": "subscribe", "id": sub_id, "channel": channel, "authorization": auth}
            await ws.send(json.dumps(frame))
            while (reply := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] == "ka":
                pass
            return reply

        base = f"/default/subs{uuid.uuid4().hex[:8]}"
        ids = [f"s{i}" for i in range(MAX_SUBSCRIPTIONS_PER_CONNECTION)]
        replies = [await subscribe(sub_id, f"{base}/{i}") for i, sub_id in enumerate(ids)]
        assert [r["type"] for r in replies] == ["subscribe_success"] * MAX_SUBSCRIPTIONS_PER_CONNECTION
        over = await subscribe("one-too-many", f"{base}/extra")
        assert over["type"] == "subscribe_error" and over["id"] == "one-too-many"
        assert [e["errorType"] for e in over["errors"]] == ["MaxSubscriptionsReachedError"]
        # A bad channel is still a bad channel, quota or not.
        bad = await subscribe("bad", "/nonexistent-namespace/x")
        assert bad["errors"][0]["errorType"] == "BadRequestException"
        # The connection carries on: unsubscribe one, and there is room for one more.
        await ws.send(json.dumps({"type": "unsubscribe", "id": ids[0]}))
        while (reply := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] == "ka":
            pass
        assert reply == {"type": "unsubscribe_success", "id": ids[0]}
        assert (await subscribe("again", f"{base}/extra"))["type"] == "subscribe_success"
        again_over = await subscribe("and-over", f"{base}/more")
        assert again_over["errors"][0]["errorType"] == "MaxSubscriptionsReachedError"
        mine = [c for c in shared_cloud.stats()["connections"] if len(c["subscriptions"]) >= 100]
        assert [len(c["subscriptions"]) for c in mine] == [MAX_SUBSCRIPTIONS_PER_CONNECTION]
    finally:
        await ws.close()
