"""The stub's blocking AppSync client (BlockingConnection) and its on_demand dialler
(OnDemandConnection), against `livelambda cloud` as a real subprocess and a scripted peer."""

from __future__ import annotations

import json
import select
import signal
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stub_runtime.appsync.auth import ApiKeyAuth, IamAuth
from stub_runtime.appsync.blocking import BlockingConnection, OnDemandConnection
from stub_runtime.appsync.errors import (
    CircuitOpen,
    ConnectFailed,
    ConnectGiveUp,
    ConnectionLost,
    HttpPublishFailed,
    OperationTimeout,
)
from stub_runtime.appsync.frames import MAX_EVENT_BYTES, AppSyncServiceError
from stub_runtime.appsync.session import State
from stub_runtime.errors import LocalProtocolError
from stub_runtime.reconnect import PolicyConfig, ReconnectPolicy
from tests.conftest import CloudProcess
from tests.peers import echo_peer, scripted_peer, self_signed_tls
from tests.test_appsync_client import attempts_at, make_auth, process_state

WAIT_S = 15.0  # upper bound for things that take milliseconds; never a timing assertion


def factory(cloud: CloudProcess, mode: str = "api_key", **kw: Any) -> Callable[[], BlockingConnection]:
    return lambda: BlockingConnection(cloud.http_url, cloud.realtime_url, make_auth(cloud, mode), **kw)


def soon() -> float:
    return time.monotonic() + WAIT_S


def on_demand(**kw: Any) -> ReconnectPolicy:
    cfg = {"mode": "on_demand", "base_delay_s": 0.05, "max_delay_s": 0.2, "min_dial_s": 0.1, **kw}
    return ReconnectPolicy(PolicyConfig(**cfg))


def channel() -> str:
    return f"/livelambda/t{uuid.uuid4().hex[:12]}/x"


def wait_readable(conn: BlockingConnection) -> None:
    """Until something the server sent waits unread in the connection's socket."""
    assert conn._sock is not None
    readable, _, _ = select.select([conn._sock], [], [], WAIT_S)
    assert readable, "nothing came from the server"


# ------------------------------------------------------------------------------------------ one connection
@pytest.mark.parametrize("mode", ["api_key", "iam"])
def test_connect_subscribe_publish_receive(shared_cloud: CloudProcess, mode: str) -> None:
    conn = factory(shared_cloud, mode)()
    conn.connect(soon())
    try:
        assert conn.is_open and conn.session.connection_timeout_ms == 300_000 and not conn.is_stale()
        ch = channel()
        sub_id = conn.subscribe(ch, soon())
        events = [json.dumps({"n": i}) for i in range(7)]  # two publishes: 5 + 2
        result = conn.publish(ch, events, soon())
        assert result.ok and [e.index for e in result.successful] == list(range(7))
        got = [conn.next_data(soon()) for _ in range(7)]
        assert all(d is not None and d.id == sub_id for d in got)
        assert sorted(d.event["n"] for d in got if d is not None) == list(range(7))
        assert conn.next_data(time.monotonic() + 0.05) is None  # nothing else: None at the deadline
    finally:
        conn.close()
    assert not conn.is_open


def test_oversized_event_is_a_local_failure_and_bad_key_is_unauthorized(shared_cloud: CloudProcess) -> None:
    conn = factory(shared_cloud)()
    conn.connect(soon())
    try:
        big = json.dumps("x" * MAX_EVENT_BYTES)
        result = conn.publish(channel(), ['"small"', big], soon())
        assert [e.index for e in result.successful] == [0]
        assert result.failed[0].index == 1 and result.failed[0].local
    finally:
        conn.close()
    bad = BlockingConnection(
        shared_cloud.http_url, shared_cloud.realtime_url, ApiKeyAuth("da2-wrong", shared_cloud.host)
    )
    with pytest.raises(AppSyncServiceError) as info:
        bad.connect(soon())
    assert info.value.error_type == "UnauthorizedException" and not bad.is_open


def test_server_closing_the_socket_is_connection_lost(shared_cloud: CloudProcess) -> None:
    conn = factory(shared_cloud)()
    conn.connect(soon())
    conn.subscribe(channel(), soon())
    shared_cloud.faults(drop_connections=True)
    with pytest.raises(ConnectionLost):
        while True:
            conn.next_data(soon())
    assert not conn.is_open and isinstance(conn.close_reason, ConnectionLost)
    with pytest.raises(ConnectionLost):
        conn.publish(channel(), ['"late"'], soon())


def test_unreachable_endpoint_is_typed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    conn = BlockingConnection(
        f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/event/realtime", ApiKeyAuth("k", "h")
    )
    with pytest.raises(ConnectFailed) as info:
        conn.connect(soon())
    assert info.value.reason == "unreachable" and conn.state is State.CLOSED
    iam = IamAuth.from_keys("h", "us-east-1", "AKIDEXAMPLE", "secret")
    over_http = BlockingConnection(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/x", iam)
    with pytest.raises(HttpPublishFailed):
        over_http.publish("/livelambda/a", ["1"], soon())


def test_scripted_server_edge_cases() -> None:
    """What the emulator never does: the upgrade's answer and the first frames in one read, ka before
    ack, the timeout only in `payload`, garbage and binary frames, an id-less error, a message in
    fragments, `failed` entries, a publish never answered, and a close frame."""
    from websockets.asyncio.server import ServerConnection

    async def handler(ws: ServerConnection) -> None:
        assert json.loads(await ws.recv()) == {"type": "connection_init"}
        await ws.send('{"type":"ka"}')
        await ws.send('{"type":"connection_ack","payload":{"connectionTimeoutMs":120000}}')
        await ws.send("garbage")
        await ws.send(b"\x00binary")
        await ws.send('{"type":"mystery"}')
        await ws.send('{"type":"error","errors":[{"errorType":"X","message":"id-less"}]}')
        await ws.send('{"type":"data","id":"nobody","event":"1"}')
        async for text in ws:
            frame = json.loads(text)
            if frame["type"] == "subscribe":
                await ws.send(json.dumps({"type": "subscribe_success", "id": frame["id"]}))
                data = json.dumps({"type": "data", "id": frame["id"], "event": json.dumps("y" * 5000)})
                await ws.send([data[:100], data[100:2000], data[2000:]])  # one message, three frames
                continue
            if frame["events"] == ['"silence"']:
                continue
            if frame["events"] == ['"close"']:
                await ws.close(4001)
                return
            n = len(frame["events"])
            failed = [{"identifier": "f", "index": n - 1, "errorCode": "E1", "errorMessage": "nope"}]
            ok = [{"identifier": f"s{i}", "index": i} for i in range(n - 1)]
            await ws.send(
                json.dumps({"type": "publish_success", "id": frame["id"], "successful": ok, "failed": failed})
            )

    with scripted_peer(handler) as port:
        url = f"ws://127.0.0.1:{port}/event/realtime"
        conn = BlockingConnection(
            f"http://127.0.0.1:{port}/event", url, ApiKeyAuth("k", "h"), ack_timeout_s=0.3
        )
        conn.connect(soon())
        assert conn.session.connection_timeout_ms == 120000
        sub_id = conn.subscribe("/livelambda/a", soon())
        data = conn.next_data(soon())
        assert data is not None and data.id == sub_id and data.event == "y" * 5000
        result = conn.publish("/livelambda/a", [json.dumps(i) for i in range(7)], soon())
        assert [e.index for e in result.failed] == [4, 6]  # the last of each batch, mapped back
        assert [e.index for e in result.successful] == [0, 1, 2, 3, 5]
        assert result.failed[0].code == "E1" and result.failed[0].message == "nope"
        session = conn.session
        assert session.stats["malformed"] == 3 and session.stats["unroutable"] == 1
        assert session.last_error is not None and session.last_error.errors[0].message == "id-less"
        with pytest.raises(OperationTimeout):
            conn.publish("/livelambda/a", ['"silence"'], soon())
        with pytest.raises(ConnectionLost, match="4001"):
            conn.publish("/livelambda/a", ['"close"'], soon())


def test_wss_verifies_the_certificate_and_then_works(tmp_path: Path) -> None:
    """AppSync is always `wss`: TLS on the same socket, the server's certificate checked (an unknown
    one is a handshake failure, not a hang), then frames as usual."""
    cert, server_tls = self_signed_tls(tmp_path)
    with scripted_peer(echo_peer, tls=server_tls) as port:
        url = f"wss://localhost:{port}/event/realtime"
        untrusted = BlockingConnection(f"https://localhost:{port}/event", url, ApiKeyAuth("k", "h"))
        with pytest.raises(ConnectFailed) as info:
            untrusted.connect(soon())
        assert info.value.reason == "handshake" and "certificate" in str(info.value).lower()

        trusted = ssl.create_default_context(cafile=str(cert))
        conn = BlockingConnection(
            f"https://localhost:{port}/event", url, ApiKeyAuth("k", "h"), ssl_context=trusted
        )
        conn.connect(soon())
        try:
            conn.subscribe("/livelambda/tls", soon())
            assert conn.publish("/livelambda/tls", ['{"big":"' + "z" * 100_000 + '"}'], soon()).ok
            data = conn.next_data(soon())
            assert data is not None and data.event == {"big": "z" * 100_000}
            conn.poll()  # nothing buffered: returns at once (SSLWantRead is not an error)
            assert conn.is_open
        finally:
            conn.close()


# ------------------------------------------------------------------------------------------ on demand
def test_on_demand_reuses_and_redials_after_loss(shared_cloud: CloudProcess) -> None:
    link = OnDemandConnection(factory(shared_cloud), on_demand())
    try:
        first = link.ensure_connected(soon())
        link.end_demand()
        assert link.ensure_connected(soon()) is first  # kept between invocations, no new dial
        link.end_demand()
        assert link.policy.stats.attempts == 1
        shared_cloud.faults(drop_connections=True)
        wait_readable(first)  # the close reached the kept socket; nobody reads it until the next demand
        second = link.ensure_connected(soon())
        link.end_demand()
        assert second is not first and second.is_open and not first.is_open
        assert link.policy.stats.attempts == 2 and link.policy.stats.losses == 1
    finally:
        link.close()


def test_on_demand_trusts_a_thawed_socket_that_kept_hearing_keepalives(shared_cloud: CloudProcess) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.monotonic() + offset[0]

    link = OnDemandConnection(factory(shared_cloud, clock=clock), on_demand(), clock=clock)
    try:
        first = link.ensure_connected(clock() + WAIT_S)
        link.end_demand()
        wait_readable(first)  # a keep-alive waits unread in the socket
        offset[0] += 301.0  # "frozen" past connectionTimeoutMs, but the server kept talking
        assert link.ensure_connected(clock() + WAIT_S) is first
        assert first.session.stats["keepalives"] >= 1 and link.policy.stats.attempts == 1
    finally:
        link.close()


def test_on_demand_thawed_stale_socket_is_not_trusted(cloud: CloudProcess) -> None:
    """A sandbox frozen past connectionTimeoutMs with nothing from the server: checked and replaced."""
    assert cloud.proc is not None
    offset = [0.0]

    def clock() -> float:
        return time.monotonic() + offset[0]

    link = OnDemandConnection(factory(cloud, clock=clock), on_demand(), clock=clock)
    try:
        first = link.ensure_connected(clock() + WAIT_S)
        link.end_demand()
        first.poll()
        cloud.proc.send_signal(signal.SIGSTOP)  # no keep-alive can refresh the old socket meanwhile
        try:
            deadline = time.monotonic() + WAIT_S
            while process_state(cloud) != "T":
                assert time.monotonic() < deadline, "the emulator did not stop"
                time.sleep(0.01)
            first.poll()  # a keep-alive sent just before the stop
            offset[0] += 301.0  # the freeze: no frame "for" 301 s (connectionTimeoutMs 300000)
            assert first.is_stale() and first.is_open
            result: list[Any] = []
            dialer = threading.Thread(target=lambda: result.append(link.ensure_connected(clock() + WAIT_S)))
            dialer.start()
            while link.policy.stats.attempts < 2:
                assert time.monotonic() < deadline, "no redial"
                time.sleep(0.01)
            assert not first.is_open and isinstance(first.close_reason, ConnectionLost)
        finally:
            cloud.proc.send_signal(signal.SIGCONT)
        dialer.join(WAIT_S)
        link.end_demand()
        second = result[0]
        assert second is not first and not second.is_stale()
        assert link.policy.stats.attempts == 2 and link.policy.stats.losses == 1
    finally:
        link.close()


def test_on_demand_retries_refusals_until_its_deadline(shared_cloud: CloudProcess) -> None:
    """HTTP 503 on the upgrade is an answer: each demand retries it, backed off, until its deadline;
    no breaker opens, so the next demand dials again (a blip must not fail invocations for long)."""
    shared_cloud.faults(refuse_connections_for_s=60)
    policy = on_demand(max_attempts=50)
    link = OnDemandConnection(factory(shared_cloud), policy)
    try:
        before = attempts_at(shared_cloud)
        began = time.monotonic()
        for _ in range(2):
            with pytest.raises(ConnectGiveUp) as info:
                link.ensure_connected(time.monotonic() + 1.0)
            link.end_demand()
            err = info.value
            assert err.reason == "deadline" and not isinstance(err, CircuitOpen)
            assert err.dials >= 2 and f"{err.dials} dial(s) over" in str(err)
            assert err.last_error is not None and "503" in str(err.last_error)
            assert err.error_type.startswith("Livelambda.")
        assert policy.state != "open" and policy.stats.breaker_opens == 0 and policy.stats.timeouts == 0
        # every dial reached the server, and no more than the policy's bound for the time it took
        assert attempts_at(shared_cloud) - before == policy.stats.attempts
        assert policy.stats.attempts <= policy.config.dial_bound(time.monotonic() - began)
    finally:
        shared_cloud.faults(reset=True)
        link.close()


def test_on_demand_black_hole_one_dial_then_the_breaker_fails_fast(shared_cloud: CloudProcess) -> None:
    """A stalled upgrade (no answer) ends the demand after one dial, however long it had; the next
    demands fail fast (CircuitOpen) without dialling until the cool-down allows one probe."""
    shared_cloud.faults(stall_connections_for_s=60)
    policy = on_demand(breaker_cooldown_s=60.0, breaker_cooldown_max_s=120.0)
    link = OnDemandConnection(factory(shared_cloud, open_timeout_s=0.3), policy)
    try:
        stalled = shared_cloud.stats()["connections_stalled"]
        with pytest.raises(ConnectGiveUp) as first:
            link.ensure_connected(soon())
        link.end_demand()
        err = first.value
        assert err.reason == "timed_out" and err.dials == 1 and policy.stats.attempts == 1
        assert "no answer from AppSync after 1 dial(s) over" in err.detail
        assert isinstance(err.last_error, ConnectFailed) and err.last_error.reason == "timeout"
        assert shared_cloud.stats()["connections_stalled"] - stalled == 1
        for _ in range(5):
            with pytest.raises(CircuitOpen) as fast:
                link.ensure_connected(soon())
            link.end_demand()
        assert fast.value.retry_at is not None and fast.value.retry_at > time.monotonic() + 20
        assert "cool-down" in str(fast.value) and fast.value.error_type == "Livelambda.AppSyncCircuitOpen"
        assert shared_cloud.stats()["connections_stalled"] - stalled == 1 and policy.stats.attempts == 1
    finally:
        shared_cloud.faults(reset=True)
        link.close()


def test_on_demand_attempts_are_capped_per_invocation(shared_cloud: CloudProcess) -> None:
    shared_cloud.faults(refuse_connections_for_s=60)
    link = OnDemandConnection(factory(shared_cloud), on_demand(max_attempts=3, breaker_threshold=10))
    try:
        before = attempts_at(shared_cloud)
        with pytest.raises(ConnectGiveUp) as info:
            link.ensure_connected(soon())
        assert info.value.reason == "attempts_exhausted" and link.policy.stats.attempts == 3
        assert attempts_at(shared_cloud) - before == 3
    finally:
        shared_cloud.faults(reset=True)
        link.close()


def test_on_demand_unauthorized_is_not_retried(shared_cloud: CloudProcess) -> None:
    def bad() -> BlockingConnection:
        auth = ApiKeyAuth("da2-wrong", shared_cloud.host)
        return BlockingConnection(shared_cloud.http_url, shared_cloud.realtime_url, auth)

    link = OnDemandConnection(bad, on_demand())
    with pytest.raises(AppSyncServiceError) as info:
        link.ensure_connected(soon())
    assert info.value.error_type == "UnauthorizedException" and link.policy.stats.attempts == 1


def test_on_demand_needs_an_on_demand_policy(shared_cloud: CloudProcess) -> None:
    with pytest.raises(LocalProtocolError):
        OnDemandConnection(factory(shared_cloud), ReconnectPolicy(PolicyConfig(mode="persistent")))
