"""Fuzzing `livelambda cloud`'s AppSync endpoints with hypothesis: random and valid-looking-but-wrong
WebSocket frames, upgrade requests and HTTP publishes. Whatever arrives, the emulator answers each frame
or request once (never an InternalFailure, never a 5xx), counts every reject (`frames_rejected`,
`http_rejected`, `connections_refused`, `events_failed` in /_livelambda/stats), and a well-behaved
subscriber and publisher beside the fuzzer keep working. (A message over 16 MB, which closes its own
connection, is tested in test_appsync_emulator.py.)

Example counts are bounded so that `make test` stays fast; the Invoke API and the dev server are fuzzed
in test_fuzz_devserver.py.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from tests.conftest import CloudProcess, auth_subprotocol

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
REPLY_TIMEOUT_S = 10.0
ERROR_TYPES = {"error", "subscribe_error", "publish_error", "unsubscribe_error"}
OK_TYPES = {"connection_ack", "subscribe_success", "unsubscribe_success", "publish_success"}
VALID_TYPES = ("connection_init", "subscribe", "unsubscribe", "publish")

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=12,
)
good_events = st.lists(json_values.map(json.dumps), min_size=1, max_size=5)
ASPECTS = ("id", "channel", "auth", "events")
# What a frame gets wrong: nothing, one aspect or two, each equally likely (st.sets favours the empty set).
WRONGS = [(), *((a,) for a in ASPECTS), *itertools.combinations(ASPECTS, 2)]


@st.composite
def bad_channels(draw: st.DrawFn) -> Any:
    """Channel names AppSync refuses, and values that are not names at all."""
    segment = st.text("abcXYZ019-_/*. ", min_size=0, max_size=12)
    return draw(
        st.sampled_from(["", "/", "/nosuchns/a", "/default" + "/a" * 6, "/default/a b", "/default/-a"])
        | segment
        | json_values.filter(lambda v: not isinstance(v, str))
    )


@st.composite
def bad_authorizations(draw: st.DrawFn, cloud: CloudProcess) -> Any:
    kind = draw(st.sampled_from(["wrong-key", "wrong-host", "sigv4-junk", "junk"]))
    if kind == "wrong-key":
        return {"x-api-key": draw(st.text(max_size=30)), "host": cloud.host}
    if kind == "wrong-host":
        return {"x-api-key": cloud.api_key, "host": draw(st.text(max_size=30))}
    if kind == "sigv4-junk":
        junk = draw(st.text(max_size=80))
        return {"Authorization": "AWS4-HMAC-SHA256 " + junk, "host": cloud.host,
                "x-amz-date": draw(st.text(max_size=20))}  # fmt: skip
    return draw(json_values)


@st.composite
def bad_events(draw: st.DrawFn) -> Any:
    """More than 5, an empty list, one over 240 KB, strings that are not JSON, not a list of strings."""
    kind = draw(st.sampled_from(["many", "empty", "large", "not-json", "not-strings"]))
    if kind == "many":
        return draw(st.lists(json_values.map(json.dumps), min_size=6, max_size=8))
    if kind == "empty":
        return []
    if kind == "large":  # past AppSync's 240 KB an event; well under the 16 MB a message
        return [json.dumps("x" * draw(st.integers(240 * 1024, 400 * 1024)))]
    if kind == "not-json":
        return draw(st.lists(st.text(max_size=20).filter(_not_json), min_size=1, max_size=5))
    strings = lambda v: isinstance(v, list) and all(isinstance(e, str) for e in v)  # noqa: E731
    return draw(json_values.filter(lambda v: not strings(v)))


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


@st.composite
def operation(draw: st.DrawFn, cloud: CloudProcess, kind: str) -> dict[str, Any]:
    """A subscribe, unsubscribe or publish frame that is wrong in none, one or two of its fields (wrong
    or missing): its id, channel, authorization, events."""
    wrong = draw(st.sampled_from(WRONGS))
    frame: dict[str, Any] = {"type": kind}
    fields: dict[str, tuple[Any, Any]] = {
        "id": (st.uuids().map(str), st.just("") | json_values.filter(lambda v: not isinstance(v, str))),
        "channel": (st.sampled_from(["/default/fuzz-a", "default/fuzz-b", "/default/fuzz/*"]),
                    bad_channels()),
        "authorization": (st.just(cloud.api_key_auth()), bad_authorizations(cloud)),
        "events": (good_events, bad_events()),
    }
    for key, (good, bad) in fields.items():
        aspect = "auth" if key == "authorization" else key
        if aspect in wrong:
            if draw(st.integers(0, 3)):
                frame[key] = draw(bad)  # else: left out
        else:
            frame[key] = draw(good)
    return frame


@st.composite
def frames(draw: st.DrawFn, cloud: CloudProcess) -> str | bytes:
    """One WebSocket message: junk, JSON that is not a frame, unknown types, `connection_init`, and
    AppSync operations right or wrong in some of their fields."""
    kind = draw(st.sampled_from(["bytes", "text", "json", "unknown", "init", *["op"] * 8]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values))
    if kind == "init":
        return json.dumps({"type": "connection_init"})
    if kind == "unknown":
        frame = {"type": draw(st.text(max_size=20).filter(lambda t: t not in VALID_TYPES) | json_values)}
        if draw(st.booleans()):
            frame["id"] = draw(json_values)
        return json.dumps(frame)
    return json.dumps(draw(operation(cloud, draw(st.sampled_from(VALID_TYPES[1:])))))


class Peers:
    """A well-behaved subscriber and publisher beside the fuzzer: each check publishes a fresh event
    and waits for the subscriber to get it."""

    def __init__(self, cloud: CloudProcess) -> None:
        self.cloud = cloud
        self._exits = contextlib.ExitStack()
        self._http = self._exits.enter_context(httpx.Client(timeout=REPLY_TIMEOUT_S))  # one: ~50 ms each
        self.sub = _open(cloud, self._exits)
        self.pub = _open(cloud, self._exits)
        self._ids = itertools.count()
        _send(self.sub, {"type": "subscribe", "id": "ok-sub", "channel": "/default/fuzz-ok/*",
                         "authorization": cloud.api_key_auth()})  # fmt: skip
        assert _reply(self.sub)["type"] == "subscribe_success"

    def check(self, via_http: bool = False) -> None:
        marker = f"ok-{next(self._ids)}"
        channel = f"/default/fuzz-ok/{marker}"
        if via_http:
            response = self._http.post(self.cloud.http_url, headers=self.cloud.api_key_auth(),
                                       json={"channel": channel, "events": [json.dumps(marker)]})  # fmt: skip
            assert response.status_code == 200 and response.json()["failed"] == [], response.text
        else:
            auth = self.cloud.api_key_auth()
            _send(self.pub, {"type": "publish", "id": marker, "channel": channel,
                             "events": [json.dumps(marker)], "authorization": auth})  # fmt: skip
            reply = _reply(self.pub)
            assert reply["type"] == "publish_success" and reply["failed"] == [], reply
        while True:  # other data may come first: fuzz frames may publish on the same channels
            data = self.sub.recv(timeout=REPLY_TIMEOUT_S)
            frame = json.loads(data)
            if frame["type"] == "data" and json.loads(frame["event"]) == marker:
                return

    def close(self) -> None:
        self._exits.close()


def _open(cloud: CloudProcess, exits: contextlib.ExitStack) -> ClientConnection:
    """A connection, initialized; closed with `exits`."""
    ws = exits.enter_context(
        connect(cloud.realtime_url, subprotocols=cloud.subprotocols(), max_size=None, open_timeout=10)
    )
    _send(ws, {"type": "connection_init"})
    assert _reply(ws)["type"] == "connection_ack"
    return ws


def _send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    ws.send(json.dumps(frame))


def _reply(ws: ClientConnection) -> dict[str, Any]:
    """The next frame that answers one of ours (keep-alives and data skipped)."""
    while True:
        frame = json.loads(ws.recv(timeout=REPLY_TIMEOUT_S))
        if frame.get("type") not in ("ka", "data"):
            return frame


@pytest.fixture
def peers(shared_cloud: CloudProcess) -> Iterator[Peers]:
    p = Peers(shared_cloud)
    try:
        yield p
    finally:
        p.close()


def _counters(cloud: CloudProcess) -> dict[str, int]:
    stats = cloud.stats()
    keys = ("frames_rejected", "http_rejected", "internal_errors", "events_failed", "connections_refused",
            "connections_total", "connections_unauthorized")  # fmt: skip
    return {k: stats[k] for k in keys}


def test_websocket_frames(shared_cloud: CloudProcess, peers: Peers) -> None:
    cloud = shared_cloud
    exits = contextlib.ExitStack()
    fuzzer = _open(cloud, exits)
    tally: dict[str, int] = {"frames": 0, "errors": 0, "failed_events": 0}

    @FUZZ
    @given(batch=st.lists(frames(cloud), min_size=1, max_size=6))
    def fuzz(batch: list[str | bytes]) -> None:
        before = _counters(cloud)
        errors = failed = 0
        for message in batch:
            fuzzer.send(message)
            reply = _reply(fuzzer)  # exactly one answer per frame, in order
            assert reply["type"] in ERROR_TYPES | OK_TYPES, reply
            if reply["type"] in ERROR_TYPES:
                errors += 1
                assert reply["errors"][0]["errorType"] != "InternalFailure", (message, reply)
            if reply["type"] == "publish_success":
                failed += len(reply["failed"])
            tally[reply["type"]] = tally.get(reply["type"], 0) + 1
        after = _counters(cloud)
        assert after["internal_errors"] == before["internal_errors"] == 0
        assert after["frames_rejected"] - before["frames_rejected"] == errors  # every reject counted
        assert after["events_failed"] - before["events_failed"] == failed
        tally["frames"] += len(batch)
        tally["errors"] += errors
        tally["failed_events"] += failed
        peers.check()  # valid traffic beside it still flows

    with exits:
        fuzz()
    print(f"websocket fuzz: {tally}")
    assert tally["errors"] > 0 and tally["frames"] > tally["errors"]  # both kinds were exercised


def _upgrade_request(cloud: CloudProcess, path: str, key: str | None, version: str, protocols: list[str],
                     headers: dict[str, str]) -> bytes:  # fmt: skip
    lines = [f"GET {path} HTTP/1.1", f"Host: {cloud.host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Version: {version}"]  # fmt: skip
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
header_value = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)


@st.composite
def upgrades(draw: st.DrawFn, cloud: CloudProcess) -> bytes:
    """WebSocket upgrade requests, each wrong in none, one or two ways: path, key, version,
    subprotocol, auth (and maybe with extra headers and subprotocols)."""
    wrong = draw(st.sets(st.sampled_from(["path", "key", "version", "protocol", "auth"]), max_size=2))
    path = "/event/realtime" + draw(st.sampled_from(["", "?x=1"]))
    if "path" in wrong:
        path = draw(st.sampled_from(["/event/realtim", "/event", "/"]) | token.map(lambda t: "/" + t))
    key: str | None = base64.b64encode(draw(st.binary(min_size=16, max_size=16))).decode()
    if "key" in wrong:
        key = draw(st.none() | token)
    version = draw(st.sampled_from(["8", "14"]) | token) if "version" in wrong else "13"
    protocols = [] if "protocol" in wrong else ["aws-appsync-event-ws"]
    if "auth" not in wrong:
        protocols.append(auth_subprotocol(cloud.api_key_auth()))
    elif draw(st.booleans()):
        protocols.append(auth_subprotocol({"x-api-key": draw(token), "host": cloud.host}))
    elif draw(st.booleans()):
        protocols.append("header-" + draw(token))
    protocols += draw(st.lists(token, max_size=2))
    headers = draw(st.dictionaries(st.sampled_from(["x-api-key", "authorization", "x-amz-date", "origin"]),
                                   header_value, max_size=2))  # fmt: skip
    return _upgrade_request(cloud, path, key, version, protocols, headers)


def test_websocket_upgrades(shared_cloud: CloudProcess, peers: Peers) -> None:
    cloud = shared_cloud
    tally = {"accepted": 0, "refused": 0}

    @FUZZ
    @given(request=upgrades(cloud))
    def fuzz(request: bytes) -> None:
        before = _counters(cloud)
        with socket.create_connection(("127.0.0.1", cloud.port), timeout=REPLY_TIMEOUT_S) as sock:
            sock.sendall(request)
            head = _read_head(sock)
            status = int(head.split(b" ", 2)[1])
            assert status < 500, head
            accepted = False
            if status == 101:  # the first frame tells an unauthorized client so (connection_error)
                sock.sendall(_masked_text(b'{"type":"connection_init"}'))
                accepted = b"connection_ack" in _read_until(sock, (b"connection_ack", b"connection_error"))
        after = _counters(cloud)
        assert after["internal_errors"] == 0
        if accepted:
            tally["accepted"] += 1
            assert after["connections_total"] - before["connections_total"] == 1
            assert after["connections_refused"] == before["connections_refused"]
        else:
            tally["refused"] += 1  # every refusal counted, whatever refused it
            assert after["connections_refused"] - before["connections_refused"] == 1, head
            assert after["connections_total"] == before["connections_total"]
        peers.check()

    fuzz()
    print(f"upgrade fuzz: {tally}")
    assert tally["accepted"] and tally["refused"]


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed before answering: {data!r}"
        data += chunk
    return data.split(b"\r\n", 1)[0]


def _read_until(sock: socket.socket, needles: tuple[bytes, ...]) -> bytes:
    data = b""
    while not any(n in data for n in needles):
        chunk = sock.recv(4096)
        assert chunk, f"closed before answering: {data!r}"
        data += chunk
    return data


def _masked_text(payload: bytes) -> bytes:
    """A client's text frame (clients must mask); the mask is all zeros, which is allowed."""
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


@st.composite
def http_publishes(draw: st.DrawFn, cloud: CloudProcess) -> tuple[bytes, dict[str, str]]:
    """An HTTP publish: a body right or wrong in its channel and events (or not a publish at all),
    and headers with the right or a wrong authorization."""
    kind = draw(st.sampled_from(["publish", "publish", "publish", "json", "bytes"]))
    if kind == "publish":
        body = draw(operation(cloud, "publish"))
        auth = body.pop("authorization", None)
        body.pop("type")
        body.pop("id", None)
        channel = body.get("channel")
        if isinstance(channel, str) and not channel.startswith("/") and draw(st.booleans()):
            body["channel"] = "/" + channel  # HTTP publish requires the leading slash
        raw = json.dumps(body).encode()
    else:
        raw = json.dumps(draw(json_values)).encode() if kind == "json" else draw(st.binary(max_size=200))
        auth = draw(st.just(cloud.api_key_auth()) | bad_authorizations(cloud))
    headers = {"content-type": draw(st.sampled_from(["application/json", "text/plain", "x/y"]))}
    if isinstance(auth, dict):
        headers.update({str(k): v for k, v in auth.items() if isinstance(v, str) and _header_ok(str(k), v)})
    return raw, headers


def _header_ok(name: str, value: str) -> bool:
    """What an HTTP client can send at all (the fuzz is about what the server does with it)."""
    token_ok = bool(name) and name.isascii() and name.replace("-", "").isalnum()
    return token_ok and value.isascii() and value.isprintable() and value == value.strip()


def test_http_publish(shared_cloud: CloudProcess, peers: Peers) -> None:
    cloud = shared_cloud
    tally = {"requests": 0, "rejected": 0, "failed_events": 0}
    with httpx.Client(timeout=REPLY_TIMEOUT_S) as http:

        @FUZZ
        @given(request=http_publishes(cloud))
        def fuzz(request: tuple[bytes, dict[str, str]]) -> None:
            body, headers = request
            before = _counters(cloud)
            response = http.post(cloud.http_url, content=body, headers=headers)
            assert response.status_code in (200, 400, 401), (response.status_code, response.text)
            answer = response.json()
            after = _counters(cloud)
            assert after["internal_errors"] == 0
            rejected = int(response.status_code != 200)
            failed = len(answer["failed"]) if response.status_code == 200 else 0
            if rejected:
                assert answer["errors"][0]["errorType"] in ("BadRequestException", "UnauthorizedException")
            assert after["http_rejected"] - before["http_rejected"] == rejected  # every reject counted
            assert after["events_failed"] - before["events_failed"] == failed
            tally["requests"] += 1
            tally["rejected"] += rejected
            tally["failed_events"] += failed
            peers.check(via_http=True)

        fuzz()
    print(f"http publish fuzz: {tally}")
    assert tally["rejected"] and tally["requests"] > tally["rejected"]
