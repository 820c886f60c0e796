"""Conformance of the AppSync Events emulator (`livelambda cloud`), with raw frames: the `websockets`
client and httpx, never the project's own client. Frame shapes are those of ../shared/PROTOCOL.md."""

from __future__ import annotations

import asyncio
import datetime
import functools
import hashlib
import json
import signal
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from devserver.cloud.options import IamCredentials
from devserver.cloud.sigv4 import SignatureError, verify_sigv4
from tests.conftest import SUBPROTOCOL, CloudProcess, auth_subprotocol, sigv4_headers

UNAUTHORIZED = {"errorType": "UnauthorizedException", "message": "You are not authorized to make this call."}
INVALID_CHANNEL = {"errorType": "BadRequestException", "message": "Invalid Channel Format"}
MAX_EVENT_BYTES = 245_760


# ----- helpers ------------------------------------------------------------------------------------


async def recv(ws: ClientConnection, *, skip_ka: bool = True, timeout: float = 10.0) -> dict[str, Any]:
    """The next frame, decoded; `ka` frames are skipped unless asked for."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if not (skip_ka and frame.get("type") == "ka"):
            return frame


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


@asynccontextmanager
async def realtime(
    cloud: CloudProcess,
    auth: dict[str, str] | None = None,
    *,
    init: bool = True,
    subprotocols: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[ClientConnection]:
    """An open WebSocket to the emulator, `connection_ack` already consumed when `init`."""
    async with connect(
        cloud.realtime_url,
        subprotocols=subprotocols if subprotocols is not None else cloud.subprotocols(auth),  # type: ignore[arg-type]
        additional_headers=headers,
        open_timeout=10,
    ) as ws:
        if init:
            await send(ws, {"type": "connection_init"})
            ack = await recv(ws)
            assert ack["type"] == "connection_ack", ack
        yield ws


async def subscribe(ws: ClientConnection, cloud: CloudProcess, channel: str, **extra: Any) -> str:
    sub_id = str(uuid.uuid4())
    frame = {"type": "subscribe", "id": sub_id, "channel": channel, "authorization": cloud.api_key_auth()}
    await send(ws, {**frame, **extra})
    reply = await recv(ws)
    assert reply == {"type": "subscribe_success", "id": sub_id}
    return sub_id


async def publish(
    ws: ClientConnection, cloud: CloudProcess, channel: str, events: list[str]
) -> dict[str, Any]:
    pub_id = str(uuid.uuid4())
    auth = cloud.api_key_auth()
    await send(
        ws, {"type": "publish", "id": pub_id, "channel": channel, "events": events, "authorization": auth}
    )
    reply = await recv(ws)
    assert reply["id"] == pub_id
    return reply


async def data_frames(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    frames = [await recv(ws) for _ in range(count)]
    assert all(f["type"] == "data" for f in frames), frames
    return frames


async def assert_no_stray_frames(ws: ClientConnection, cloud: CloudProcess) -> None:
    """Nothing but what the test consumed was sent to `ws`, proved without waiting: frames to one
    connection keep their order, so a sentinel published now must be the very next thing to arrive."""
    sentinel = channel_name()
    sub_id = await subscribe(ws, cloud, sentinel)  # asserts the next frame is subscribe_success
    assert (await publish(ws, cloud, sentinel, ['"sentinel"']))["type"] == "publish_success"
    assert await recv(ws) == {"type": "data", "id": sub_id, "event": '"sentinel"'}


async def eventually(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def channel_name(prefix: str = "/default") -> str:
    """A fresh channel, so tests sharing a cloud never see each other's events."""
    return f"{prefix}/t{uuid.uuid4().hex[:12]}"


# ----- connecting ---------------------------------------------------------------------------------


async def test_connect_with_api_key_gets_ack_with_timeout_and_selected_subprotocol(
    shared_cloud: CloudProcess,
) -> None:
    async with realtime(shared_cloud, init=False) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        await send(ws, {"type": "connection_init"})
        ack = await recv(ws)
        assert ack == {
            "type": "connection_ack",
            "connectionTimeoutMs": 300000,
            "payload": {"connectionTimeoutMs": 300000},
        }


async def test_connect_with_auth_as_plain_upgrade_headers(shared_cloud: CloudProcess) -> None:
    async with realtime(
        shared_cloud, subprotocols=[SUBPROTOCOL], headers={"x-api-key": shared_cloud.api_key}
    ) as ws:
        await subscribe(ws, shared_cloud, channel_name())


async def test_connect_with_iam(shared_cloud: CloudProcess) -> None:
    async with realtime(shared_cloud, shared_cloud.iam_auth(b"{}")) as ws:
        await subscribe(ws, shared_cloud, channel_name())


def _stale() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=6)


@pytest.mark.parametrize(
    "make_auth",
    [
        pytest.param(lambda c: {"x-api-key": "da2-wrong", "host": c.host}, id="wrong-api-key"),
        pytest.param(lambda c: {"x-api-key": c.api_key, "host": "127.0.0.1:1"}, id="api-key-wrong-host"),
        pytest.param(lambda c: {"x-api-key": c.api_key}, id="api-key-no-host"),
        pytest.param(lambda c: {"host": c.host}, id="no-credentials"),
        pytest.param(
            lambda c: c.iam_auth(b"{}", credentials=IamCredentials("AKIDTEST", "not-the-secret")),
            id="iam-bad-signature",
        ),
        pytest.param(
            lambda c: c.iam_auth(b"{}", credentials=IamCredentials("AKIDUNKNOWN", "secret")),
            id="iam-unknown-access-key",
        ),
        pytest.param(lambda c: c.iam_auth(b"{}", host="127.0.0.1:1"), id="iam-wrong-host"),
        pytest.param(lambda c: c.iam_auth(b"{}", when=_stale()), id="iam-stale-date"),
        pytest.param(lambda c: c.iam_auth(b'{"x":1}'), id="iam-signed-other-body"),
        pytest.param(lambda c: c.iam_auth(b"{}", region="eu-west-1"), id="iam-other-region"),
    ],
)
async def test_unauthorized_connection_gets_connection_error_then_close(
    shared_cloud: CloudProcess, make_auth: Any
) -> None:
    before = shared_cloud.stats()
    async with realtime(shared_cloud, make_auth(shared_cloud), init=False) as ws:
        await send(ws, {"type": "connection_init"})
        assert await recv(ws) == {"type": "connection_error", "errors": [UNAUTHORIZED]}
        with pytest.raises(ConnectionClosedOK):
            await recv(ws)
        assert ws.close_code == 1000  # the service closes with 1000 even on failure
    after = shared_cloud.stats()
    assert after["connections_unauthorized"] == before["connections_unauthorized"] + 1
    assert after["connections_total"] == before["connections_total"]


async def test_handshake_without_the_events_subprotocol_is_refused(shared_cloud: CloudProcess) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with realtime(shared_cloud, subprotocols=[auth_subprotocol(shared_cloud.api_key_auth())]):
            pass
    assert info.value.response.status_code == 400


async def test_ka_frames_arrive_repeatedly(shared_cloud: CloudProcess) -> None:
    async with realtime(shared_cloud) as ws:
        # One ka right after the ack, the next a ka interval (1 s in tests) later.
        frames = [await recv(ws, skip_ka=False) for _ in range(2)]
        assert frames == [{"type": "ka"}] * 2


# ----- subscribe / unsubscribe --------------------------------------------------------------------


async def test_subscribe_authorization_is_checked(shared_cloud: CloudProcess) -> None:
    cloud = shared_cloud
    channel = channel_name()
    async with realtime(cloud) as ws:
        for auth in (
            {"x-api-key": "da2-wrong", "host": cloud.host},
            cloud.iam_auth({"channel": "/default/other"}),
            None,
        ):
            frame = {"type": "subscribe", "id": "s-bad", "channel": channel, "authorization": auth}
            if auth is None:
                del frame["authorization"]
            await send(ws, frame)
            assert await recv(ws) == {"type": "subscribe_error", "id": "s-bad", "errors": [UNAUTHORIZED]}
        await send(
            ws,
            {
                "type": "subscribe",
                "id": "s-iam",
                "channel": channel,
                "authorization": cloud.iam_auth({"channel": channel}),
            },
        )
        assert await recv(ws) == {"type": "subscribe_success", "id": "s-iam"}


@pytest.mark.parametrize(
    "channel",
    [
        pytest.param("/default/a/b/c/d/e", id="six-segments"),
        pytest.param("/default/a/b/c/d/*", id="six-with-wildcard"),
        pytest.param("/default/a_b", id="underscore"),
        pytest.param("/default/a b", id="space"),
        pytest.param("/default/-a", id="leading-dash"),
        pytest.param("/default/" + "a" * 51, id="segment-too-long"),
        pytest.param("/default//a", id="empty-segment"),
        pytest.param("/nope/a", id="unknown-namespace"),
        pytest.param("/default/*/a", id="wildcard-in-the-middle"),
        pytest.param("/*", id="wildcard-namespace"),
        pytest.param(42, id="not-a-string"),
    ],
)
async def test_subscribe_to_invalid_channel(shared_cloud: CloudProcess, channel: object) -> None:
    async with realtime(shared_cloud) as ws:
        auth = shared_cloud.api_key_auth()
        await send(ws, {"type": "subscribe", "id": "s1", "channel": channel, "authorization": auth})
        assert await recv(ws) == {"type": "subscribe_error", "id": "s1", "errors": [INVALID_CHANNEL]}


async def test_subscribe_without_leading_slash_is_accepted_on_websocket(shared_cloud: CloudProcess) -> None:
    channel = channel_name()
    async with realtime(shared_cloud) as ws:
        sub_id = await subscribe(ws, shared_cloud, channel.lstrip("/"))
        await publish(ws, shared_cloud, channel, ['"hi"'])
        assert (await data_frames(ws, 1))[0] == {"type": "data", "id": sub_id, "event": '"hi"'}


async def test_duplicate_subscription_id_is_refused(shared_cloud: CloudProcess) -> None:
    async with realtime(shared_cloud) as ws:
        sub_id = await subscribe(ws, shared_cloud, channel_name())
        auth = shared_cloud.api_key_auth()
        await send(ws, {"type": "subscribe", "id": sub_id, "channel": channel_name(), "authorization": auth})
        reply = await recv(ws)
        assert reply["type"] == "subscribe_error" and reply["id"] == sub_id
        assert reply["errors"][0]["errorType"] == "BadRequestException"


async def test_unsubscribe_stops_delivery_and_unknown_id_is_an_error(shared_cloud: CloudProcess) -> None:
    channel = channel_name()
    async with realtime(shared_cloud) as ws:
        sub_id = await subscribe(ws, shared_cloud, channel)
        await send(ws, {"type": "unsubscribe", "id": sub_id})
        assert await recv(ws) == {"type": "unsubscribe_success", "id": sub_id}
        await send(ws, {"type": "unsubscribe", "id": sub_id})
        reply = await recv(ws)
        assert reply["type"] == "unsubscribe_error" and reply["id"] == sub_id
        assert reply["errors"][0]["errorType"] == "BadRequestException"
        assert (await publish(ws, shared_cloud, channel, ["1"]))["type"] == "publish_success"
        await assert_no_stray_frames(ws, shared_cloud)


# ----- publish and fan-out ------------------------------------------------------------------------


async def test_wildcard_fan_out_across_connections(shared_cloud: CloudProcess) -> None:
    cloud = shared_cloud
    room = channel_name()
    async with realtime(cloud) as a, realtime(cloud) as b, realtime(cloud) as publisher:
        a_below = await subscribe(a, cloud, f"{room}/*")
        b_exact = await subscribe(b, cloud, f"{room}/x")
        b_room = await subscribe(b, cloud, room)

        # Publishing needs no subscription; events are JSON values encoded as strings.
        reply = await publish(publisher, cloud, f"{room}/x", ['{"n":1}', "[2]"])
        assert reply["type"] == "publish_success" and reply["failed"] == []
        assert [s["index"] for s in reply["successful"]] == [0, 1]
        assert all(uuid.UUID(s["identifier"]) for s in reply["successful"])
        assert await data_frames(a, 2) == [
            {"type": "data", "id": a_below, "event": '{"n":1}'},
            {"type": "data", "id": a_below, "event": "[2]"},
        ]
        assert await data_frames(b, 2) == [
            {"type": "data", "id": b_exact, "event": '{"n":1}'},
            {"type": "data", "id": b_exact, "event": "[2]"},
        ]

        # Deeper channels reach the wildcard; the prefix itself reaches only its exact subscriber.
        await publish(publisher, cloud, f"{room}/x/y/z", ['"deep"'])
        assert (await data_frames(a, 1))[0]["event"] == '"deep"'
        await publish(publisher, cloud, room, ['"room"'])
        assert await data_frames(b, 1) == [{"type": "data", "id": b_room, "event": '"room"'}]
        await assert_no_stray_frames(a, shared_cloud)
        await assert_no_stray_frames(b, shared_cloud)
        await assert_no_stray_frames(publisher, shared_cloud)


async def test_one_connection_with_two_matching_subscriptions_gets_one_frame_each(
    shared_cloud: CloudProcess,
) -> None:
    channel = channel_name()
    async with realtime(shared_cloud) as ws:
        wide = await subscribe(ws, shared_cloud, "/default/*")
        exact = await subscribe(ws, shared_cloud, channel)
        await publish(ws, shared_cloud, channel, ["7"])
        frames = [f for f in await data_frames(ws, 2) if f["event"] == "7"]
        assert sorted(f["id"] for f in frames) == sorted([wide, exact])
        await send(ws, {"type": "unsubscribe", "id": wide})
        assert (await recv(ws))["type"] == "unsubscribe_success"


async def test_publish_to_wildcard_and_invalid_channels_is_refused(shared_cloud: CloudProcess) -> None:
    async with realtime(shared_cloud) as ws:
        for channel in ("/default/*", "/nope/a", "/default/a/b/c/d/e"):
            reply = await publish(ws, shared_cloud, channel, ["1"])
            assert reply == {"type": "publish_error", "id": reply["id"], "errors": [INVALID_CHANNEL]}


async def test_publish_more_than_five_events_is_a_bad_request(shared_cloud: CloudProcess) -> None:
    channel = channel_name()
    async with realtime(shared_cloud) as ws:
        sub_id = await subscribe(ws, shared_cloud, channel)
        reply = await publish(ws, shared_cloud, channel, [str(i) for i in range(6)])
        assert reply["type"] == "publish_error"
        assert reply["errors"][0]["errorType"] == "BadRequestException"
        reply = await publish(ws, shared_cloud, channel, [str(i) for i in range(5)])
        assert reply["type"] == "publish_success" and len(reply["successful"]) == 5
        frames = await data_frames(ws, 5)
        assert [f["event"] for f in frames] == ["0", "1", "2", "3", "4"] and {f["id"] for f in frames} == {
            sub_id
        }


async def test_oversized_event_is_failed_and_never_delivered(shared_cloud: CloudProcess) -> None:
    channel = channel_name()
    # 2-byte UTF-8 characters: the limit counts bytes, not characters.
    at_limit = json.dumps("é" * ((MAX_EVENT_BYTES - 2) // 2), ensure_ascii=False)
    assert len(at_limit.encode()) == MAX_EVENT_BYTES
    over = json.dumps("a" * (MAX_EVENT_BYTES - 1))
    async with realtime(shared_cloud) as ws:
        await subscribe(ws, shared_cloud, channel)
        reply = await publish(ws, shared_cloud, channel, ['"small"', over, at_limit])
        assert reply["type"] == "publish_success"
        assert [s["index"] for s in reply["successful"]] == [0, 2]
        [failed] = reply["failed"]
        assert failed["index"] == 1 and uuid.UUID(failed["identifier"])
        assert failed["code"] and "240" in failed["message"]
        assert [f["event"] for f in await data_frames(ws, 2)] == ['"small"', at_limit]
        await assert_no_stray_frames(ws, shared_cloud)


async def test_a_frame_over_the_size_limit_closes_its_connection(shared_cloud: CloudProcess) -> None:
    """A WebSocket message larger than the emulator takes (16 MB) ends its own connection with 1009
    (message too big); other connections carry on."""
    from devserver.cloud.realtime import MAX_FRAME_BYTES

    channel = channel_name()
    async with realtime(shared_cloud) as bystander, realtime(shared_cloud) as ws:
        sub_id = await subscribe(bystander, shared_cloud, channel)
        # Only the frame's header, announcing one byte more than the limit (masked, as clients send):
        # the emulator judges the length before it reads the payload.
        ws.transport.write(struct.pack("!BBQ", 0x81, 0x80 | 127, MAX_FRAME_BYTES + 1) + b"mask")
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1009
        reply = await publish(bystander, shared_cloud, channel, ['"still here"'])
        assert reply["type"] == "publish_success"
        assert await recv(bystander) == {"type": "data", "id": sub_id, "event": '"still here"'}


async def test_publish_with_iam_over_websocket(shared_cloud: CloudProcess) -> None:
    channel = channel_name()
    events = ['{"text":"naïve ☃"}']
    async with realtime(shared_cloud) as ws:
        await subscribe(ws, shared_cloud, channel)
        for ensure_ascii in (False, True):  # JS (raw UTF-8) and Python-default (\\u escapes) signers
            body = json.dumps(
                {"channel": channel, "events": events}, separators=(",", ":"), ensure_ascii=ensure_ascii
            )
            auth = shared_cloud.iam_auth(body)
            await send(
                ws,
                {"type": "publish", "id": "p", "channel": channel, "events": events, "authorization": auth},
            )
            assert (await recv(ws))["type"] == "publish_success"
            assert (await data_frames(ws, 1))[0]["event"] == events[0]
        tampered = shared_cloud.iam_auth({"channel": channel, "events": ["1"]})
        await send(
            ws,
            {"type": "publish", "id": "p2", "channel": channel, "events": events, "authorization": tampered},
        )
        assert await recv(ws) == {"type": "publish_error", "id": "p2", "errors": [UNAUTHORIZED]}


async def test_malformed_and_unknown_frames_get_error_frames_and_the_connection_survives(
    shared_cloud: CloudProcess,
) -> None:
    async with realtime(shared_cloud) as ws:
        for raw in ("{not json", "[1,2]", '"text"'):
            await ws.send(raw)
            reply = await recv(ws)
            assert reply["type"] == "error" and reply["errors"][0]["errorType"] == "BadRequestException"
        await send(ws, {"type": "start", "id": "x1"})
        reply = await recv(ws)
        assert reply == {
            "type": "error",
            "id": "x1",
            "errors": [
                {
                    "errorType": "UnsupportedOperation",
                    "message": "start not supported through the realtime channel",
                }
            ],
        }
        await send(ws, {"type": "publish", "channel": "/default/a", "events": ["1"]})
        assert (await recv(ws))["type"] == "publish_error"  # no id
        await subscribe(ws, shared_cloud, channel_name())  # still alive


# ----- HTTP publish -------------------------------------------------------------------------------


async def test_http_publish_reaches_websocket_subscribers(shared_cloud: CloudProcess) -> None:
    channel = channel_name()
    async with realtime(shared_cloud) as ws, httpx.AsyncClient() as http:
        sub_id = await subscribe(ws, shared_cloud, f"{channel.rsplit('/', 1)[0]}/*")
        body = {"channel": channel, "events": ['{"event_1":"data_1"}', '{"n":2}']}
        response = await http.post(
            shared_cloud.http_url, json=body, headers={"x-api-key": shared_cloud.api_key}
        )
        assert response.status_code == 200
        result = response.json()
        assert result["failed"] == [] and [s["index"] for s in result["successful"]] == [0, 1]
        frames = await data_frames(ws, 2)
        assert [json.loads(f["event"]) for f in frames if f["id"] == sub_id][-2:] == [
            {"event_1": "data_1"},
            {"n": 2},
        ]


async def test_http_publish_with_iam(shared_cloud: CloudProcess) -> None:
    cloud = shared_cloud
    body = json.dumps({"channel": channel_name(), "events": ["1"]}).encode()
    async with httpx.AsyncClient() as http:
        ok = await http.post(cloud.http_url, content=body, headers=cloud.iam_auth(body))
        assert ok.status_code == 200 and len(ok.json()["successful"]) == 1
        for headers in (
            cloud.iam_auth(body + b" "),  # signed another body
            cloud.iam_auth(body, host="localhost:1"),
            cloud.iam_auth(body, when=_stale()),
            cloud.iam_auth(body, credentials=IamCredentials("AKIDTEST", "wrong")),
        ):
            response = await http.post(cloud.http_url, content=body, headers=headers)
            assert response.status_code == 401
            assert response.json() == {"errors": [UNAUTHORIZED]}


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        pytest.param({"channel": "/default/*", "events": ["1"]}, 400, "BadRequestException", id="wildcard"),
        pytest.param(
            {"channel": "default/a", "events": ["1"]}, 400, "BadRequestException", id="no-leading-slash"
        ),
        pytest.param(
            {"channel": "/nope/a", "events": ["1"]}, 400, "BadRequestException", id="unknown-namespace"
        ),
        pytest.param(
            {"channel": "/default/a", "events": ["1"] * 6}, 400, "BadRequestException", id="six-events"
        ),
        pytest.param({"channel": "/default/a", "events": []}, 400, "BadRequestException", id="no-events"),
        pytest.param(
            {"channel": "/default/a", "events": [{"a": 1}]}, 400, "BadRequestException", id="not-strings"
        ),
        pytest.param(b"{nope", 400, "BadRequestException", id="malformed-json"),
    ],
)
async def test_http_publish_errors(
    shared_cloud: CloudProcess, body: Any, status: int, error_type: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient() as http:
        response = await http.post(
            shared_cloud.http_url, content=content, headers={"x-api-key": shared_cloud.api_key}
        )
    assert response.status_code == status
    [error] = response.json()["errors"]
    assert error["errorType"] == error_type and error["message"]


async def test_http_publish_unauthorized(shared_cloud: CloudProcess) -> None:
    body = {"channel": "/default/a", "events": ["1"]}
    async with httpx.AsyncClient() as http:
        for headers in (
            {"x-api-key": "da2-wrong"},
            {},
            {"x-api-key": shared_cloud.api_key, "host": "example.com"},
        ):
            response = await http.post(shared_cloud.http_url, json=body, headers=headers)
            assert response.status_code == 401 and response.json() == {"errors": [UNAUTHORIZED]}


# ----- fault injection ----------------------------------------------------------------------------


async def test_a_subscriber_that_stops_reading_is_dropped_and_never_holds_up_anyone(
    shared_cloud: CloudProcess,
) -> None:
    """Writes to subscribers never wait: unsent bytes pile up for one that stopped reading until the
    emulator drops it (past MAX_BUFFERED_BYTES), while publishes and the other subscriber carry on."""
    from devserver.cloud.realtime import MAX_BUFFERED_BYTES

    channel, event = channel_name(), json.dumps("x" * 200_000)
    headers = {"x-api-key": shared_cloud.api_key}

    def holds(sub_id: str) -> bool:
        subs = [s["id"] for c in shared_cloud.stats()["connections"] for s in c["subscriptions"]]
        return sub_id in subs

    async with (
        realtime(shared_cloud) as stalled,
        realtime(shared_cloud) as reader,
        httpx.AsyncClient(timeout=30.0) as http,
    ):
        stalled_sub = await subscribe(stalled, shared_cloud, channel)
        await subscribe(reader, shared_cloud, channel)
        stalled.transport.pause_reading()  # the socket fills up, then the emulator's buffer
        sent = 0
        while holds(stalled_sub):
            assert sent < 2 * MAX_BUFFERED_BYTES, "the emulator kept buffering for a client that left"
            body = {"channel": channel, "events": [event] * 5}
            response = await http.post(shared_cloud.http_url, json=body, headers=headers)
            assert response.status_code == 200 and len(response.json()["successful"]) == 5
            sent += 5 * len(event)
            assert len(await data_frames(reader, 5)) == 5  # the reader is served all along
        assert sent > MAX_BUFFERED_BYTES
        stalled.transport.resume_reading()
        with pytest.raises(ConnectionClosedError) as info:
            while True:
                await recv(stalled)
        assert info.value.rcvd is None  # dropped: no close frame
        await publish(reader, shared_cloud, channel, ['"still here"'])
        assert (await recv(reader))["event"] == '"still here"'


async def test_drop_connections_closes_with_1000(shared_cloud: CloudProcess) -> None:
    async with realtime(shared_cloud) as ws:
        result = shared_cloud.faults(drop_connections=True)
        assert result["dropped"] >= 1
        with pytest.raises(ConnectionClosedOK):
            await recv(ws)
        assert ws.close_code == 1000


async def test_drop_connections_abruptly_gives_no_close_frame(shared_cloud: CloudProcess) -> None:
    async with realtime(shared_cloud) as ws:
        shared_cloud.faults(drop_connections=True, abrupt=True)
        with pytest.raises(ConnectionClosedError) as info:
            await recv(ws)
        assert info.value.rcvd is None  # TCP died: no close frame came
    await eventually(lambda: shared_cloud.stats()["connections_current"] == 0, "the emulator to forget it")


async def test_refuse_connections_for_a_while_then_accept_again(shared_cloud: CloudProcess) -> None:
    before = shared_cloud.stats()["connections_refused"]
    shared_cloud.faults(refuse_connections_for_s=0.5)
    with pytest.raises(InvalidStatus) as info:
        async with realtime(shared_cloud):
            pass
    assert info.value.response.status_code == 503
    assert shared_cloud.stats()["connections_refused"] >= before + 1
    for _ in range(200):  # the window ends by itself; retry until it has
        try:
            async with realtime(shared_cloud) as ws:
                await subscribe(ws, shared_cloud, channel_name())
            break
        except InvalidStatus:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("connections were still refused long after the window")


async def test_duplicate_and_delayed_delivery(shared_cloud: CloudProcess) -> None:
    channel = channel_name()
    async with realtime(shared_cloud) as ws:
        sub_id = await subscribe(ws, shared_cloud, channel)
        shared_cloud.faults(duplicate_delivery=True, delay_delivery_ms=50)
        assert (await publish(ws, shared_cloud, channel, ["1", "2"]))["type"] == "publish_success"
        assert [f["event"] for f in await data_frames(ws, 4)] == ["1", "1", "2", "2"]
        shared_cloud.faults(reset=True)
        await publish(ws, shared_cloud, channel, ["3"])
        assert await data_frames(ws, 1) == [{"type": "data", "id": sub_id, "event": "3"}]
        await assert_no_stray_frames(ws, shared_cloud)


async def test_drop_after_frames(shared_cloud: CloudProcess) -> None:
    channel = channel_name()
    async with realtime(shared_cloud) as subscriber, realtime(shared_cloud) as publisher:
        await subscribe(subscriber, shared_cloud, channel)
        shared_cloud.faults(drop_after_frames=2)
        await publish(publisher, shared_cloud, channel, ["1", "2", "3"])
        assert [f["event"] for f in await data_frames(subscriber, 2)] == ["1", "2"]
        with pytest.raises(ConnectionClosed):
            await recv(subscriber)
        assert shared_cloud.stats()["faults"]["drop_after_frames"] is None  # one-shot
        await publish(publisher, shared_cloud, channel, ["4"])  # the publisher was not dropped


async def test_bad_fault_requests_are_rejected(shared_cloud: CloudProcess) -> None:
    async with httpx.AsyncClient() as http:
        url = f"{shared_cloud.base_url}/_livelambda/faults"
        for spec in ({"explode": True}, {"delay_delivery_ms": -1}, {"duplicate_delivery": "yes"}, [1]):
            response = await http.post(url, json=spec)
            assert response.status_code == 400, spec
            assert response.json()["error"]


# ----- stats, on a fresh process so that counts are exact ----------------------------------------


async def test_stats_count_connections_subscriptions_and_deliveries(cloud: CloudProcess) -> None:
    assert cloud.stats()["connections_current"] == 0
    channel = channel_name()
    async with realtime(cloud) as a, realtime(cloud) as b:
        sub_id = await subscribe(a, cloud, channel)
        await subscribe(b, cloud, "/default/*")
        await publish(b, cloud, channel, ["1", "2", "x" * 3])  # the third is not JSON: failed
        await data_frames(a, 2)
        await data_frames(b, 2)
        stats = cloud.stats()
        assert stats["connections_current"] == 2
        assert stats["connections_total"] == 2
        assert stats["subscriptions"] == 2
        assert stats["subscriptions_total"] == 2
        assert stats["publishes"] == 1
        assert stats["events_published"] == 2
        assert stats["events_failed"] == 1
        assert stats["events_delivered"] == 4
        [info_a] = [
            c for c in stats["connections"] if c["subscriptions"] == [{"id": sub_id, "channel": channel}]
        ]
        assert info_a["remote"].startswith("127.0.0.1:") and info_a["connected_at"] > 0 and info_a["id"]
    async with realtime(cloud, {"x-api-key": "da2-wrong", "host": cloud.host}, init=False) as bad:
        await send(bad, {"type": "connection_init"})
        assert (await recv(bad))["type"] == "connection_error"
    await eventually(lambda: cloud.stats()["connections_current"] == 0, "closed connections to be forgotten")
    stats = cloud.stats()
    assert (stats["connections_total"], stats["connections_refused"], stats["connections_unauthorized"]) == (
        2,
        1,
        1,
    )
    assert stats["subscriptions"] == 0


# ----- the process --------------------------------------------------------------------------------


def test_banner_shows_the_real_port_and_ctrl_c_stops_cleanly(cloud: CloudProcess) -> None:
    output = cloud.output()
    assert cloud.realtime_url in output and cloud.http_url in output and cloud.api_key in output
    assert "AKIDTEST" in output and "secret" not in output.replace("SECRET", "")
    assert cloud.proc is not None
    cloud.proc.send_signal(signal.SIGINT)
    assert cloud.proc.wait(timeout=10) == 0
    assert "stopped" in cloud.output()


async def test_restart_on_the_same_port(cloud: CloudProcess) -> None:
    port = cloud.port
    async with realtime(cloud) as ws:
        cloud.stop()
        with pytest.raises(ConnectionClosed):
            await recv(ws)
    cloud.start()
    assert cloud.port == port
    async with realtime(cloud) as ws:
        await subscribe(ws, cloud, channel_name())


async def test_drop_after_zero_frames_loses_the_next_frame_with_its_connection(
    shared_cloud: CloudProcess,
) -> None:
    channel = channel_name()
    async with realtime(shared_cloud) as subscriber, realtime(shared_cloud) as publisher:
        await subscribe(subscriber, shared_cloud, channel)
        shared_cloud.faults(drop_after_frames=0, abrupt=True)
        await publish(publisher, shared_cloud, channel, ['"lost"'])
        with pytest.raises(ConnectionClosedError) as info:
            await recv(subscriber)
        assert info.value.rcvd is None


async def test_localhost_is_accepted_as_the_api_host(shared_cloud: CloudProcess) -> None:
    body = {"channel": channel_name(), "events": ["1"]}
    headers = {"x-api-key": shared_cloud.api_key, "host": f"localhost:{shared_cloud.port}"}
    async with httpx.AsyncClient() as http:
        response = await http.post(shared_cloud.http_url, json=body, headers=headers)
    assert response.status_code == 200


# ----- SigV4 verification in-process (cases the fixture's credentials do not reach) ---------------


def test_sigv4_session_tokens_and_content_hash() -> None:
    host = "127.0.0.1:9"
    temporary = IamCredentials("ASIATEST", "secret", "token-1")
    body = b'{"channel":"/default/a"}'
    verify = functools.partial(
        verify_sigv4, credentials=[temporary], region="us-east-1", expected_hosts={host}
    )

    headers = sigv4_headers(body, host=host, credentials=temporary, region="us-east-1")
    assert headers["X-Amz-Security-Token"] == "token-1"
    assert verify(headers, [body]) == "ASIATEST"
    assert verify(headers, [b"{}", body]) == "ASIATEST"  # any candidate body may match
    with pytest.raises(SignatureError, match="signature does not match"):
        verify(headers, [b"{}"])

    other_token = sigv4_headers(
        body, host=host, credentials=IamCredentials("ASIATEST", "secret", "token-2"), region="us-east-1"
    )
    with pytest.raises(SignatureError, match="session token"):
        verify(other_token, [body])
    no_token = sigv4_headers(
        body, host=host, credentials=IamCredentials("ASIATEST", "secret"), region="us-east-1"
    )
    with pytest.raises(SignatureError, match="session token"):
        verify(no_token, [body])

    # A signed x-amz-content-sha256 stands for the body in the signature: it must be the received body's.
    request = AWSRequest(
        method="POST",
        url=f"https://{host}/event",
        data=b"{}",
        headers={"host": host, "x-amz-content-sha256": hashlib.sha256(b"{}").hexdigest()},
    )
    SigV4Auth(Credentials("ASIATEST", "secret", "token-1"), "appsync", "us-east-1").add_auth(request)
    claims_other_body = dict(request.headers.items())
    assert verify(claims_other_body, [b"{}"]) == "ASIATEST"
    with pytest.raises(SignatureError, match="signature does not match"):
        verify(claims_other_body, [body])


@pytest.mark.parametrize(
    ("authorization", "why"),
    [
        ("Bearer abc", "not AWS4-HMAC-SHA256"),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20250101/us-east-1/appsync/aws4_request",
            "lacks SignedHeaders",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/x, SignedHeaders=host, Signature=00",
            "malformed credential scope",
        ),
    ],
)
def test_sigv4_malformed_authorization(authorization: str, why: str) -> None:
    with pytest.raises(SignatureError, match=why):
        verify_sigv4(
            {"Authorization": authorization, "host": "h", "x-amz-date": "20250101T000000Z"},
            [b"{}"],
            credentials=[IamCredentials("AKIDTEST", "secret")],
            region="us-east-1",
            expected_hosts={"h"},
        )
