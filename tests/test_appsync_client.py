"""AppSyncEventsClient and ReconnectingClient against `livelambda cloud` as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stub_runtime.appsync.auth import ApiKeyAuth, IamAuth
from stub_runtime.appsync.client import (
    AppSyncEventsClient,
    AppSyncServiceError,
    ClientClosed,
    ConnectFailed,
    ConnectionLost,
    HttpPublishFailed,
    InvalidChannel,
    InvalidEvents,
    OperationTimeout,
)
from stub_runtime.appsync.frames import MAX_EVENT_BYTES
from stub_runtime.appsync.reconnecting import (
    ConnectionState,
    ReconnectingClient,
)
from stub_runtime.errors import LocalProtocolError
from stub_runtime.reconnect import PolicyConfig, ReconnectPolicy
from tests.conftest import CloudProcess
from tests.peers import appsync_peer, echo_peer, scripted_peer, self_signed_tls

WAIT_S = 15.0  # upper bound for things that take milliseconds; never a timing assertion


def make_auth(cloud: CloudProcess, mode: str) -> ApiKeyAuth | IamAuth:
    if mode == "api_key":
        return ApiKeyAuth(cloud.api_key, cloud.host)
    return IamAuth.from_keys(cloud.host, cloud.region, cloud.iam.access_key_id, cloud.iam.secret_access_key)


def factory(cloud: CloudProcess, mode: str = "api_key", **kw: Any) -> Callable[[], AppSyncEventsClient]:
    return lambda: AppSyncEventsClient(cloud.http_url, cloud.realtime_url, make_auth(cloud, mode), **kw)


def session() -> str:
    return "t" + uuid.uuid4().hex[:12]


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def take(sub: Any, n: int) -> list[Any]:
    return [await asyncio.wait_for(sub.get(), WAIT_S) for _ in range(n)]


def process_state(cloud: CloudProcess) -> str:
    """The one-letter state of the emulator process ("T": stopped), from /proc."""
    assert cloud.proc is not None
    stat = Path(f"/proc/{cloud.proc.pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def attempts_at(cloud: CloudProcess) -> int:
    stats = cloud.stats()
    return stats["connections_total"] + stats["connections_refused"]


# ------------------------------------------------------------------------------------------ one client
@pytest.mark.parametrize("mode", ["api_key", "iam"])
async def test_connect_subscribe_publish_receive(shared_cloud: CloudProcess, mode: str) -> None:
    client = factory(shared_cloud, mode)()
    await client.connect()
    try:
        assert client.is_open and client.session.connection_timeout_ms == 300_000
        assert not client.is_stale()
        s = session()
        sub = await client.subscribe(f"/livelambda/{s}/*")
        assert sub.active

        result = await client.publish(f"/livelambda/{s}/a", [json.dumps({"via": "publish", "x": "<b>"})])
        assert result.ok and [e.index for e in result.successful] == [0]
        assert (await client.publish_ws(f"/livelambda/{s}/b/c", ['{"via":"ws"}'])).ok
        assert (await client.publish_http(f"/livelambda/{s}/c", ['{"via":"http"}', "42"])).ok

        got = await take(sub, 4)
        assert {"via": "publish", "x": "<b>"} in got and {"via": "ws"} in got
        assert {"via": "http"} in got and 42 in got
        await client.publish(f"/livelambda/{s}x/a", ['"elsewhere"'])  # not below the pattern
        await client.publish(f"/livelambda/{s}/d", ['"last"'])
        assert await asyncio.wait_for(sub.get(), WAIT_S) == "last"
    finally:
        await client.close()
    assert client.closed and await client.wait_closed() is None


async def test_iam_publish_routes_over_http(shared_cloud: CloudProcess) -> None:
    client = factory(shared_cloud, "iam")()
    before = shared_cloud.stats()["publishes"]
    # No connect(): HTTP publish needs no WebSocket, and IAM publishes go over HTTP.
    result = await client.publish(f"/livelambda/{session()}/a", ['{"html":"<p>é</p>"}'])
    assert result.ok and shared_cloud.stats()["publishes"] == before + 1


async def test_publish_splits_batches_of_five(shared_cloud: CloudProcess) -> None:
    client = factory(shared_cloud)()
    await client.connect()
    try:
        s = session()
        sub = await client.subscribe(f"/livelambda/{s}/*")
        before = shared_cloud.stats()["publishes"]
        events = [json.dumps(i) for i in range(12)]
        ws = await client.publish_ws(f"/livelambda/{s}/n", events)
        http = await client.publish_http(f"/livelambda/{s}/n", events)
        for result in (ws, http):
            assert result.ok and [e.index for e in result.successful] == list(range(12))
            assert len({e.identifier for e in result.successful}) == 12
        assert shared_cloud.stats()["publishes"] == before + 6  # 3 + 3 requests of at most 5
        assert sorted(await take(sub, 24)) == sorted(list(range(12)) * 2)
    finally:
        await client.close()


async def test_subscribe_error_raises(shared_cloud: CloudProcess) -> None:
    client = factory(shared_cloud)()
    await client.connect()
    try:
        with pytest.raises(AppSyncServiceError) as info:
            await client.subscribe(f"/nosuchnamespace/{session()}/*")  # valid shape, unknown namespace
        assert info.value.error_type == "BadRequestException"
        assert info.value.errors[0].message == "Invalid Channel Format"
        assert client.is_open  # the connection survives a refused subscription
        assert (await client.subscribe(f"/livelambda/{session()}")).active
    finally:
        await client.close()


async def test_invalid_channel_fails_before_sending(shared_cloud: CloudProcess) -> None:
    client = factory(shared_cloud)()
    await client.connect()
    try:
        before = shared_cloud.stats()
        with pytest.raises(InvalidChannel):
            await client.subscribe("livelambda/no-leading-slash")
        with pytest.raises(InvalidChannel):
            await client.publish("/livelambda/x/*", ["1"])  # wildcard: subscribe only
        with pytest.raises(InvalidChannel):
            await client.publish_http("/a/b/c/d/e/f", ["1"])
        with pytest.raises(InvalidEvents):
            await client.publish("/livelambda/x", [{"not": "a string"}])  # type: ignore[list-item]
        after = shared_cloud.stats()
        assert after["subscriptions_total"] == before["subscriptions_total"]
        assert after["publishes"] == before["publishes"]
    finally:
        await client.close()


@pytest.mark.parametrize("path", ["ws", "http"])
async def test_oversized_event_reported_failed(shared_cloud: CloudProcess, path: str) -> None:
    s = session()
    big = json.dumps("x" * MAX_EVENT_BYTES)  # 2 bytes over with its quotes
    events = ['"a"', big, '"b"']
    local = factory(shared_cloud)()
    unchecked = factory(shared_cloud, max_event_bytes=None)()  # let the server judge it
    for client in (local, unchecked):
        await client.connect()
    try:
        sub = await local.subscribe(f"/livelambda/{s}/*")
        before = shared_cloud.stats()["events_failed"]
        for client, is_local in ((local, True), (unchecked, False)):
            publish = client.publish_ws if path == "ws" else client.publish_http
            result = await publish(f"/livelambda/{s}/big", events)
            assert [e.index for e in result.successful] == [0, 2]
            assert len(result.failed) == 1 and result.failed[0].index == 1
            assert result.failed[0].local is is_local and not result.ok
            assert str(MAX_EVENT_BYTES) in result.failed[0].message
            if not is_local:
                assert result.failed[0].code == 400
            with pytest.raises(AppSyncServiceError):
                result.raise_for_failed()
        assert shared_cloud.stats()["events_failed"] == before + 1  # the local check sent nothing
        assert sorted(await take(sub, 4)) == ["a", "a", "b", "b"]
    finally:
        await local.close()
        await unchecked.close()


async def test_publish_errors(shared_cloud: CloudProcess) -> None:
    client = factory(shared_cloud)()
    await client.connect()
    try:
        with pytest.raises(AppSyncServiceError) as ws_err:
            await client.publish_ws("/nosuchnamespace/a", ["1"])
        assert ws_err.value.error_type == "BadRequestException"
        with pytest.raises(AppSyncServiceError) as http_err:
            await client.publish_http("/nosuchnamespace/a", ["1"])
        assert http_err.value.error_type == "BadRequestException" and http_err.value.status == 400
    finally:
        await client.close()
    bad = AppSyncEventsClient(shared_cloud.http_url, shared_cloud.realtime_url, ApiKeyAuth("da2-wrong", "x"))
    with pytest.raises(AppSyncServiceError) as unauthorized:
        await bad.publish_http("/livelambda/a", ["1"])
    assert unauthorized.value.error_type == "UnauthorizedException" and unauthorized.value.status == 401


@pytest.mark.parametrize("mode", ["api_key", "iam"])
async def test_unauthorized_connect_raises_service_error(shared_cloud: CloudProcess, mode: str) -> None:
    if mode == "api_key":
        auth: ApiKeyAuth | IamAuth = ApiKeyAuth("da2-wrong", shared_cloud.host)
    else:
        auth = IamAuth.from_keys(shared_cloud.host, shared_cloud.region, "AKIDTEST", "wrong-secret")
    client = AppSyncEventsClient(shared_cloud.http_url, shared_cloud.realtime_url, auth)
    with pytest.raises(AppSyncServiceError) as info:
        await client.connect()
    assert info.value.error_type == "UnauthorizedException"
    assert client.closed
    with pytest.raises(ClientClosed):
        await client.subscribe("/livelambda/a")


async def test_unsubscribe(shared_cloud: CloudProcess) -> None:
    client = factory(shared_cloud)()
    await client.connect()
    try:
        s = session()
        sub = await client.subscribe(f"/livelambda/{s}/*")
        keep = await client.subscribe(f"/livelambda/{s}/*")
        await client.unsubscribe(sub)
        assert not sub.active
        await client.unsubscribe(sub)  # idempotent
        await client.publish(f"/livelambda/{s}/a", ['"after"'])
        assert await asyncio.wait_for(keep.get(), WAIT_S) == "after"
        assert [e async for e in sub] == []  # ended: iteration stops, nothing was delivered
        with pytest.raises(ClientClosed):
            await sub.get()
    finally:
        await client.close()


async def test_close_ends_subscriptions_and_operations(shared_cloud: CloudProcess) -> None:
    client = factory(shared_cloud)()
    await client.connect()
    sub = await client.subscribe(f"/livelambda/{session()}/*")
    waiter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    await client.close()
    with pytest.raises(ClientClosed):
        await waiter
    with pytest.raises(ClientClosed):
        await client.publish_ws("/livelambda/a", ["1"])
    await client.close()  # idempotent


# ------------------------------------------------------------------------------------------ liveness
async def test_server_drop_is_connection_lost(shared_cloud: CloudProcess) -> None:
    client = factory(shared_cloud)()
    await client.connect()
    sub = await client.subscribe(f"/livelambda/{session()}/*")
    waiter = asyncio.ensure_future(sub.get())
    shared_cloud.faults(drop_connections=True)  # closes with 1000, as the service does even on failure
    reason = await asyncio.wait_for(client.wait_closed(), WAIT_S)
    assert isinstance(reason, ConnectionLost) and client.closed and client.is_stale()
    with pytest.raises(ConnectionLost):
        await waiter
    with pytest.raises(ConnectionLost):
        await client.publish_ws("/livelambda/a", ["1"])


async def test_keepalive_watchdog_detects_silent_server(cloud: CloudProcess) -> None:
    """A server that stops sending (frozen: TCP stays up, no close) is detected by the watchdog."""
    assert cloud.proc is not None
    client = factory(cloud, silence_timeout_s=2.5)()  # ka every 1 s in the fixture
    await client.connect()
    sub = await client.subscribe(f"/livelambda/{session()}/*")
    first = client.last_frame_at
    await until(lambda: client.last_frame_at != first, "a keep-alive frame")
    assert client.session.stats["keepalives"] >= 1 and client.is_open
    cloud.proc.send_signal(signal.SIGSTOP)
    try:
        reason = await asyncio.wait_for(client.wait_closed(), WAIT_S)
    finally:
        cloud.proc.send_signal(signal.SIGCONT)
    assert isinstance(reason, ConnectionLost) and "no frame" in str(reason)
    assert client.is_stale()
    with pytest.raises(ConnectionLost):
        await sub.get()


async def test_is_stale(shared_cloud: CloudProcess) -> None:
    client = factory(shared_cloud)()
    assert client.is_stale()  # never connected
    await client.connect()
    try:
        assert client.last_frame_at is not None
        assert not client.is_stale(client.last_frame_at + 299.0)
        assert client.is_stale(client.last_frame_at + 300.5)  # connectionTimeoutMs 300000
        first = client.last_frame_at
        await until(lambda: client.last_frame_at != first, "a keep-alive frame")  # every frame counts
    finally:
        await client.close()
    assert client.is_stale()


# ------------------------------------------------------------------------------------------ reconnecting
def persistent_policy() -> ReconnectPolicy:
    return ReconnectPolicy(
        PolicyConfig(mode="persistent", base_delay_s=0.05, max_delay_s=0.5, stable_after_s=30.0)
    )


async def test_persistent_recovers_from_drops_during_a_burst(shared_cloud: CloudProcess) -> None:
    s = session()
    received: list[Any] = []
    states: list[ConnectionState] = []
    rc = ReconnectingClient(factory(shared_cloud), persistent_policy())
    runner = asyncio.ensure_future(
        rc.run([f"/livelambda/{s}/*"], lambda ch, ev: received.append(ev), on_state=states.append)
    )
    publisher = factory(shared_cloud)()  # HTTP publish: independent of the connection under test
    drops = 3
    try:
        await asyncio.wait_for(rc.ensure_connected(), WAIT_S)
        sent = 0
        for _ in range(drops):
            successes = rc.stats.successes
            for _ in range(5):  # a burst while the connection is dropped under it
                await publisher.publish_http(f"/livelambda/{s}/burst", [json.dumps(["burst", sent])])
                sent += 1
            shared_cloud.faults(drop_connections=True, abrupt=sent % 2 == 0)
            for _ in range(5):
                await publisher.publish_http(f"/livelambda/{s}/burst", [json.dumps(["burst", sent])])
                sent += 1
            await until(lambda n=successes: rc.stats.successes > n, "a reconnection")
        await asyncio.wait_for(rc.ensure_connected(), WAIT_S)

        after = [json.dumps(["after", i]) for i in range(7)]
        assert (await publisher.publish_http(f"/livelambda/{s}/after", after)).ok
        await until(lambda: sum(1 for e in received if e[0] == "after") == 7, "events after recovery")

        stats = rc.stats
        assert stats.successes == drops + 1 and stats.losses == drops
        assert stats.attempts == stats.successes + stats.failures
        assert stats.attempts <= 2 * (drops + 1)  # the emulator accepted every dial: no retry storms
        assert sorted(e[1] for e in received if e[0] == "after") == list(range(7))  # HTTP: 2 requests
        assert sum(1 for e in received if e[0] == "burst") <= sent  # some burst events fell in gaps
        kinds = [st.state for st in states]
        assert kinds.count("connected") == drops + 1 and "backoff" in kinds
        assert states[-1].state == "connected" and states[-1].attempts == stats.attempts
        backoff = next(st for st in states if st.state == "backoff")
        assert backoff.retry_at is not None and backoff.retry_in_s is not None
        assert backoff.last_error and "ConnectionLost" in backoff.last_error
        assert shared_cloud.stats()["connections_current"] >= 1
    finally:
        await rc.close()
        await asyncio.wait_for(runner, WAIT_S)
    assert rc.state.state == "stopped" and rc.client is None


async def test_persistent_hands_events_over_in_order_and_survives_a_failing_callback(
    shared_cloud: CloudProcess,
) -> None:
    """on_event gets each event as it is read, in order; one that raises (or a coroutine that fails)
    is counted and logged, and the events after it still arrive."""
    s = session()
    received: list[Any] = []

    def on_event(channel: str, event: Any) -> Any:
        if event == "raise":
            raise ValueError("a bug in the callback")
        if event == "async-fail":

            async def fail() -> None:
                raise ValueError("a bug in the coroutine")

            return fail()
        if event == "async":

            async def record() -> None:
                received.append(("async", channel))

            return record()
        received.append(event)
        return None

    rc = ReconnectingClient(factory(shared_cloud), persistent_policy())
    runner = asyncio.ensure_future(rc.run([f"/livelambda/{s}/*"], on_event))
    publisher = factory(shared_cloud)()
    try:
        await asyncio.wait_for(rc.ensure_connected(), WAIT_S)
        for event in [1, "raise", 2, "async-fail", "async", 3]:
            await publisher.publish_http(f"/livelambda/{s}/x", [json.dumps(event)])
        await until(lambda: len(received) == 4 and rc.callback_errors == 2, "the events after the failures")
        assert received == [1, 2, ("async", f"/livelambda/{s}/*"), 3]  # the subscription's channel
    finally:
        await rc.close()
        await asyncio.wait_for(runner, WAIT_S)


async def test_persistent_keeps_dialling_while_refused(shared_cloud: CloudProcess) -> None:
    """Refused dials back off (counted, bounded) and the connection returns when the server does."""
    s = session()
    received: list[Any] = []
    states: list[ConnectionState] = []
    shared_cloud.faults(refuse_connections_for_s=1.5)
    t0 = time.monotonic()
    rc = ReconnectingClient(factory(shared_cloud), persistent_policy())
    runner = asyncio.ensure_future(
        rc.run([f"/livelambda/{s}/*"], lambda ch, ev: received.append(ev), on_state=states.append)
    )
    try:
        await asyncio.wait_for(rc.ensure_connected(), WAIT_S)
        elapsed = time.monotonic() - t0
        stats = rc.stats
        assert stats.failures >= 1 and stats.successes == 1
        assert stats.attempts == stats.failures + 1
        # Floor rate: at most 2 dials per max_delay_s window once decayed, plus the decay itself.
        assert stats.attempts <= 2 * (elapsed / 0.5 + 1) + 5
        failing = [st for st in states if st.state == "backoff"]
        assert failing and "unavailable" in (failing[0].last_error or "") + str(rc.last_error)
        await factory(shared_cloud)().publish_http(f"/livelambda/{s}/x", ['"back"'])
        await until(lambda: received == ["back"], "an event after the refusal")
    finally:
        await rc.close()
        await asyncio.wait_for(runner, WAIT_S)


# ------------------------------------------------------------------------------------------ edge cases
async def test_unreachable_endpoint_is_typed() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    client = AppSyncEventsClient(
        f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/event/realtime", ApiKeyAuth("k", "h")
    )
    with pytest.raises(ConnectFailed) as info:
        await client.connect()
    assert info.value.reason == "unreachable" and client.closed
    assert info.value.error_type == "Livelambda.AppSyncConnectFailed"
    with pytest.raises(HttpPublishFailed):
        await client.publish_http("/livelambda/a", ["1"])
    assert client.http_url == f"http://127.0.0.1:{port}/event"


async def test_scripted_server_edge_cases() -> None:
    """A scripted peer for what the emulator never does: ka before ack, ack with the timeout only in
    `payload`, garbage frames, an id-less error, and `failed` entries in the other spelling."""
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        assert json.loads(await ws.recv()) == {"type": "connection_init"}
        await ws.send('{"type":"ka"}')
        await ws.send('{"type":"connection_ack","payload":{"connectionTimeoutMs":120000}}')
        await ws.send("garbage")
        await ws.send('{"type":"mystery"}')
        await ws.send('{"type":"error","errors":[{"errorType":"X","message":"id-less"}]}')
        await ws.send('{"type":"data","id":"nobody","event":"1"}')
        async for text in ws:
            frame = json.loads(text)
            n = len(frame["events"])
            failed = [{"identifier": "f", "index": n - 1, "errorCode": "E1", "errorMessage": "nope"}]
            ok = [{"identifier": f"s{i}", "index": i} for i in range(n - 1)]
            reply = {"type": "publish_success", "id": frame["id"], "successful": ok, "failed": failed}
            await ws.send(json.dumps(reply))

    async with serve(handler, "127.0.0.1", 0, subprotocols=["aws-appsync-event-ws"]) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/event/realtime"
        client = AppSyncEventsClient(f"http://127.0.0.1:{port}/event", url, ApiKeyAuth("k", "h"))
        await client.connect()
        try:
            assert client.session.connection_timeout_ms == 120000
            result = await client.publish_ws("/livelambda/a", [json.dumps(i) for i in range(7)])
            # two batches (5 + 2): the last of each failed, indexes mapped back to the caller's list
            assert [e.index for e in result.failed] == [4, 6]
            assert [e.index for e in result.successful] == [0, 1, 2, 3, 5]
            assert result.failed[0].code == "E1" and result.failed[0].message == "nope"
            session = client.session
            assert session.stats["malformed"] == 2 and session.stats["unroutable"] == 1
            assert session.last_error is not None and session.last_error.errors[0].message == "id-less"
            assert client.is_open
        finally:
            await client.close()


async def test_policy_mode_mismatch_is_local_error(shared_cloud: CloudProcess) -> None:
    on_demand = ReconnectPolicy(PolicyConfig(mode="on_demand"))
    with pytest.raises(LocalProtocolError):  # on_demand is the stub's: blocking.OnDemandConnection
        ReconnectingClient(factory(shared_cloud), on_demand)


async def test_wss_verifies_the_certificate_and_then_works(tmp_path: Path) -> None:
    """AppSync is always `wss`: the server's certificate is checked (an unknown one is a handshake
    failure, not a hang), then frames flow as usual, a 100 KB event included."""
    cert, server_tls = self_signed_tls(tmp_path)
    with scripted_peer(echo_peer, tls=server_tls) as port:
        http, url = f"https://localhost:{port}/event", f"wss://localhost:{port}/event/realtime"
        untrusted = AppSyncEventsClient(http, url, ApiKeyAuth("k", "h"))
        with pytest.raises(ConnectFailed) as info:
            await untrusted.connect()
        assert info.value.reason == "handshake" and "certificate" in str(info.value).lower()

        trusted = ssl.create_default_context(cafile=str(cert))
        client = AppSyncEventsClient(http, url, ApiKeyAuth("k", "h"), ssl_context=trusted)
        await client.connect()
        try:
            sub = await client.subscribe("/livelambda/tls")
            big = '{"big":"' + "z" * 100_000 + '"}'
            assert (await client.publish("/livelambda/tls", [big])).ok
            assert await asyncio.wait_for(sub.get(), WAIT_S) == {"big": "z" * 100_000}
            assert client.is_open
        finally:
            await client.close()
        assert client.closed and client.close_reason is None


async def test_an_unanswered_publish_times_out_and_the_connection_stays_usable() -> None:
    """A publish AppSync never answers fails with OperationTimeout after ack_timeout_s; the frames
    that do come keep being handled on the same connection."""
    with scripted_peer(appsync_peer()) as port:  # never answers a publish
        client = AppSyncEventsClient(
            f"http://127.0.0.1:{port}/event", f"ws://127.0.0.1:{port}/event/realtime", ApiKeyAuth("k", "h"),
            ack_timeout_s=0.3,
        )
        await client.connect()
        try:
            with pytest.raises(OperationTimeout, match="did not answer a publish to /livelambda/quiet"):
                await client.publish("/livelambda/quiet", ['"hello"'])
            assert client.is_open and client.session.pending == 0 and not client._waiters  # none left
            sub = await client.subscribe("/livelambda/after")
            assert sub.active
        finally:
            await client.close()
