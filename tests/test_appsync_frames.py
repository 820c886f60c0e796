"""Sans-I/O tests of stub_runtime.appsync.frames, .ws_messages and .auth: no sockets, no server."""

from __future__ import annotations

import base64
import datetime
import json
import sys
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from stub_runtime.appsync import frames as f
from stub_runtime.appsync.auth import ApiKeyAuth, AuthConfigError, IamAuth, TokenAuth
from stub_runtime.appsync.ws_messages import MessageAssembler, text_of
from stub_runtime.errors import LocalProtocolError, RemoteProtocolError

ERR = f.ServiceErrorDetail("BadRequestException", "Invalid Channel Format")
ERR_CODE = f.ServiceErrorDetail("UnauthorizedException", "You are not authorized to make this call.", 401)


# ------------------------------------------------------------------------------------------ client frames
def test_connection_init() -> None:
    assert json.loads(f.ConnectionInit().encode()) == {"type": "connection_init"}


def test_subscribe_frame_matches_protocol() -> None:
    auth = {"x-api-key": "da2-x", "host": "example.com"}
    frame = f.Subscribe("/ns/foo/*", auth)
    obj = json.loads(frame.encode())
    assert obj == {"type": "subscribe", "id": frame.id, "channel": "/ns/foo/*", "authorization": auth}
    assert uuid.UUID(frame.id).version == 4
    assert f.Subscribe("/ns/a", auth).id != frame.id


def test_new_id_is_a_random_uuid4_string() -> None:
    ids = [f.new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # lowercase, hyphenated, as str(uuid.uuid4()) writes it
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every hex digit outside the fixed version/variant bits varies
    for position in (0, 9, 15, 20, 35):
        assert len({value[position] for value in ids}) > 4


def test_unsubscribe_and_publish_frames_match_protocol() -> None:
    assert json.loads(f.Unsubscribe("abc").encode()) == {"type": "unsubscribe", "id": "abc"}
    auth = {"x-api-key": "k", "host": "h"}
    pub = f.Publish("/ns/foo", ['{"a":1}', "42"], auth)
    assert json.loads(pub.encode()) == {
        "type": "publish", "id": pub.id, "channel": "/ns/foo", "events": ['{"a":1}', "42"],
        "authorization": auth,
    }  # fmt: skip
    # Escapes included: what json.dumps writes, compact, non-ASCII kept as is.
    tricky = f.Publish("/ns/é", ['{"q":"\\"é\\n"}', '"\\u2028 \\ud800"'], {"x-api-key": "k\"", "host": "h"})
    want = {"type": "publish", "id": tricky.id, "channel": "/ns/é", "events": tricky.events,
            "authorization": {"x-api-key": "k\"", "host": "h"}}  # fmt: skip
    assert tricky.encode() == json.dumps(want, separators=(",", ":"), ensure_ascii=False)


def test_frames_are_compact_json() -> None:
    assert " " not in f.Subscribe("/ns/a", {"host": "h"}, id="1").encode()


def test_signing_bodies_are_compact_json() -> None:
    assert f.connect_body() == "{}"
    assert f.subscribe_body("/ns/a/*") == '{"channel":"/ns/a/*"}'
    assert f.publish_body("/ns/a", ['{"x":1}']) == '{"channel":"/ns/a","events":["{\\"x\\":1}"]}'
    assert f.publish_body("/ns/a", ['"é<>"']) == '{"channel":"/ns/a","events":["\\"é<>\\""]}'


# ------------------------------------------------------------------------------------------ header
def decode_header(value: str) -> dict[str, str]:
    """What a server reads from the `header-` subprotocol (the emulator has its own reader)."""
    assert value.startswith("header-")
    b64 = value[len("header-") :]
    return json.loads(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)))


def test_header_subprotocol_matches_protocol_snippet() -> None:
    auth = {"x-api-key": "da2-abcdef", "host": "abc.appsync-api.us-east-1.amazonaws.com"}
    hdr = "header-" + base64.urlsafe_b64encode(
        json.dumps(auth, separators=(",", ":")).encode()
    ).decode().rstrip("=")
    assert f.header_subprotocol(auth) == hdr
    assert f.subprotocols(auth) == ["aws-appsync-event-ws", hdr]
    assert "=" not in hdr and "+" not in hdr and "/" not in hdr
    assert decode_header(hdr) == auth


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=60), max_size=6))
def test_header_subprotocol_round_trips(auth: dict[str, str]) -> None:
    assert decode_header(f.header_subprotocol(auth)) == auth


# ------------------------------------------------------------------------------------------ server frames
ERR_JSON = {"errorType": "BadRequestException", "message": "Invalid Channel Format"}
ERR_CODE_JSON = {"errorType": "UnauthorizedException", "message": ERR_CODE.message, "errorCode": 401}
SERVER_FRAMES: list[tuple[dict[str, Any], f.ServerFrame]] = [
    ({"type": "connection_ack", "connectionTimeoutMs": 300000}, f.ConnectionAck(300000)),
    ({"type": "connection_error", "errors": [ERR_CODE_JSON]}, f.ConnectionError((ERR_CODE,))),
    ({"type": "ka"}, f.KeepAlive()),
    ({"type": "subscribe_success", "id": "s1"}, f.SubscribeSuccess("s1")),
    ({"type": "subscribe_error", "id": "s1", "errors": [ERR_JSON]}, f.SubscribeError("s1", (ERR,))),
    ({"type": "data", "id": "s1", "event": '{"a":1}'}, f.Data("s1", {"a": 1}, '{"a":1}')),
    ({"type": "broadcast_error", "id": "s1", "errors": [ERR_JSON, ERR_CODE_JSON]},
     f.BroadcastError("s1", (ERR, ERR_CODE))),
    ({"type": "unsubscribe_success", "id": "s1"}, f.UnsubscribeSuccess("s1")),
    ({"type": "unsubscribe_error", "id": "s1", "errors": [ERR_JSON]}, f.UnsubscribeError("s1", (ERR,))),
    ({"type": "publish_success", "id": "p1", "successful": [{"identifier": "u1", "index": 0}],
      "failed": [{"identifier": "u2", "index": 1, "code": 400, "message": "too big"}]},
     f.PublishSuccess("p1", (f.PublishedEntry("u1", 0),), (f.FailedEntry("u2", 1, 400, "too big"),))),
    ({"type": "publish_error", "id": "p1", "errors": [ERR_JSON]}, f.PublishError("p1", (ERR,))),
    ({"type": "error", "id": "x", "errors": [ERR_JSON]}, f.Error("x", (ERR,))),
    ({"type": "error", "errors": [ERR_JSON]}, f.Error(None, (ERR,))),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "frame"), SERVER_FRAMES, ids=lambda x: type(x).__name__)
def test_server_frames_parse(obj: dict[str, Any], frame: f.ServerFrame) -> None:
    assert f.parse_server_frame(json.dumps(obj)) == frame


def test_protocol_examples_parse() -> None:
    examples = {
        '{"type":"connection_ack","connectionTimeoutMs":300000}': f.ConnectionAck(300000),
        '{"type":"ka"}': f.KeepAlive(),
        '{"type":"subscribe_success","id":"a"}': f.SubscribeSuccess("a"),
        '{"type":"data","id":"a","event":"{\\"a\\":1}"}': f.Data("a", {"a": 1}, '{"a":1}'),
        '{"type":"data","id":"a","event":"42"}': f.Data("a", 42, "42"),
        '{"type":"unsubscribe_success","id":"a"}': f.UnsubscribeSuccess("a"),
    }
    for text, want in examples.items():
        assert f.parse_server_frame(text) == want
    err = f.parse_server_frame(
        '{"type":"connection_error","errors":[{"errorType":"UnauthorizedException",'
        '"message":"You are not authorized to make this call."}]}'
    )
    assert err == f.ConnectionError(
        (f.ServiceErrorDetail("UnauthorizedException", "You are not authorized to make this call."),)
    )


def test_connection_ack_timeout_locations() -> None:
    assert f.parse_server_frame('{"type":"connection_ack","payload":{"connectionTimeoutMs":5}}') == (
        f.ConnectionAck(5)
    )
    both = '{"type":"connection_ack","connectionTimeoutMs":7,"payload":{"connectionTimeoutMs":7}}'
    assert f.parse_server_frame(both) == f.ConnectionAck(7)
    assert f.parse_server_frame('{"type":"connection_ack"}') == f.ConnectionAck(300000)


def test_publish_success_accepts_both_failed_spellings() -> None:
    text = json.dumps(
        {
            "type": "publish_success",
            "id": "p",
            "successful": [{"identifier": "a", "index": 0}],
            "failed": [
                {"identifier": "b", "index": 1, "code": 400, "message": "m1"},
                {"identifier": "c", "index": 2, "errorCode": "E", "errorMessage": "m2"},
            ],
        }
    )
    frame = f.parse_server_frame(text)
    assert isinstance(frame, f.PublishSuccess)
    assert frame.failed == (f.FailedEntry("b", 1, 400, "m1"), f.FailedEntry("c", 2, "E", "m2"))


MALFORMED = [
    b'{"type":"ka"}',  # binary
    "not json",
    "[]",
    '"ka"',
    "{}",
    '{"type":5}',
    '{"type":"no_such_frame"}',
    '{"type":"subscribe_success"}',
    '{"type":"subscribe_success","id":""}',
    '{"type":"subscribe_success","id":3}',
    '{"type":"data","id":"a"}',
    '{"type":"data","id":"a","event":{"a":1}}',
    '{"type":"data","id":"a","event":"{not json"}',
    '{"type":"subscribe_error","id":"a"}',
    '{"type":"subscribe_error","id":"a","errors":"bad"}',
    '{"type":"subscribe_error","id":"a","errors":[1]}',
    '{"type":"subscribe_error","id":"a","errors":[{"message":"no type"}]}',
    '{"type":"publish_error","id":"a","errors":[{"errorType":"X","message":"m","errorCode":[]}]}',
    '{"type":"connection_ack","connectionTimeoutMs":"300000"}',
    '{"type":"connection_ack","connectionTimeoutMs":0}',
    '{"type":"connection_ack","connectionTimeoutMs":true}',
    '{"type":"publish_success","id":"p","successful":{},"failed":[]}',
    '{"type":"publish_success","id":"p","successful":[{"index":0}],"failed":[]}',
    '{"type":"publish_success","id":"p","successful":[{"identifier":"a","index":"0"}],"failed":[]}',
    '{"type":"publish_success","id":"p","successful":[],"failed":[{"identifier":"a","index":0,"code":{}}]}',
    '{"type":"error","id":5,"errors":[]}',
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_server_frames_raise(text: str | bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        f.parse_server_frame(text)


@given(st.text(max_size=200))
def test_parser_never_raises_anything_else(text: str) -> None:
    try:
        f.parse_server_frame(text)
    except RemoteProtocolError:
        pass


def test_service_error_carries_errors() -> None:
    exc = f.AppSyncServiceError("the subscription to /x/y", [ERR_CODE, ERR])
    assert isinstance(exc, RemoteProtocolError)
    assert exc.error_type == "UnauthorizedException"
    assert exc.errors == [ERR_CODE, ERR]
    assert "UnauthorizedException" in str(exc) and "code 401" in str(exc) and "/x/y" in str(exc)
    empty = f.AppSyncServiceError("x", [])
    assert empty.error_type == "AppSync.ServiceError"


# ------------------------------------------------------------------------------------------ ws messages
def test_message_assembler_joins_fragments_and_passes_whole_frames_as_they_are() -> None:
    messages = MessageAssembler()
    whole = Frame(Opcode.TEXT, "é".encode())
    assert messages.feed(whole) is whole and text_of(whole) == "é"  # no copy
    assert messages.feed(Frame(Opcode.TEXT, b'{"a":', fin=False)) is None
    assert messages.feed(Frame(Opcode.CONT, b'"b', fin=False)) is None
    joined = messages.feed(Frame(Opcode.CONT, b'c"}'))
    assert joined is not None and joined.opcode is Opcode.TEXT and text_of(joined) == '{"a":"bc"}'
    assert messages.feed(Frame(Opcode.BINARY, b"x", fin=False)) is None
    binary = messages.feed(Frame(Opcode.CONT, b"y"))
    assert binary is not None and binary.data == b"xy" and text_of(binary) is None
    assert text_of(Frame(Opcode.TEXT, b"\xff")) is None  # not UTF-8


# ------------------------------------------------------------------------------------------ auth
def test_api_key_auth_headers() -> None:
    auth = ApiKeyAuth("da2-key", "abc.appsync-api.us-east-1.amazonaws.com")
    assert auth.headers("{}") == {"x-api-key": "da2-key", "host": "abc.appsync-api.us-east-1.amazonaws.com"}
    assert auth.headers('{"channel":"/a/b"}') == auth.headers("{}")
    assert not auth.publish_over_http
    assert "da2-key" not in repr(auth)
    with pytest.raises(LocalProtocolError):
        ApiKeyAuth("", "h")


def test_token_auth_headers() -> None:
    assert TokenAuth(lambda: "tok", "h").headers("{}") == {"Authorization": "tok", "host": "h"}


FIXED = datetime.datetime(2025, 1, 2, 3, 4, 5)
HOST = "abc.appsync-api.us-east-1.amazonaws.com"


@pytest.fixture
def fixed_date(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: FIXED)


def _reference_signature(body: str, token: str | None) -> dict[str, str]:
    """Sign the PROTOCOL.md request directly with botocore."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(
        method="POST",
        url=f"https://{HOST}/event",
        data=body.encode(),
        headers={
            "accept": "application/json, text/javascript",
            "content-encoding": "amz-1.0",
            "content-type": "application/json; charset=UTF-8",
        },
    )
    SigV4Auth(Credentials("AKIDEXAMPLE", "SECRET", token), "appsync", "us-east-1").add_auth(req)
    return dict(req.headers.items())


@pytest.mark.parametrize("token", [None, "SESSIONTOKEN"])
@pytest.mark.parametrize("body", ["{}", '{"channel":"/ns/a/*"}', f.publish_body("/ns/a", ['{"x":"<b>"}'])])
def test_iam_headers_match_botocore(fixed_date: None, body: str, token: str | None) -> None:
    auth = IamAuth.from_keys(HOST, "us-east-1", "AKIDEXAMPLE", "SECRET", token)
    headers = auth.headers(body)
    ref = _reference_signature(body, token)
    assert headers["Authorization"] == ref["Authorization"]
    scope = "Credential=AKIDEXAMPLE/20250102/us-east-1/appsync/aws4_request"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 " + scope)
    assert headers["x-amz-date"] == "20250102T030405Z"
    assert headers["host"] == HOST
    assert headers["accept"] == "application/json, text/javascript"
    assert headers["content-encoding"] == "amz-1.0"
    assert headers["content-type"] == "application/json; charset=UTF-8"
    if token:
        assert headers["X-Amz-Security-Token"] == token
    else:
        assert "X-Amz-Security-Token" not in headers
    assert auth.publish_over_http


def test_iam_signature_depends_on_body(fixed_date: None) -> None:
    auth = IamAuth.from_keys(HOST, "us-east-1", "AK", "SK")
    assert auth.headers("{}")["Authorization"] != auth.headers('{"channel":"/a/b"}')["Authorization"]


def test_iam_reads_provider_each_time(fixed_date: None) -> None:
    from botocore.credentials import Credentials

    keys = iter([Credentials("AK1", "S1"), ("AK2", "S2", "T2")])
    auth = IamAuth(HOST, "us-east-1", lambda: next(keys))
    assert "Credential=AK1/" in auth.headers("{}")["Authorization"]
    second = auth.headers("{}")
    assert "Credential=AK2/" in second["Authorization"] and second["X-Amz-Security-Token"] == "T2"


def test_iam_env_credentials(fixed_date: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SKENV")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "TENV")
    headers = IamAuth(HOST, "us-east-1").headers("{}")
    assert "Credential=AKENV/" in headers["Authorization"] and headers["X-Amz-Security-Token"] == "TENV"


def test_iam_bad_provider() -> None:
    with pytest.raises(AuthConfigError):
        IamAuth(HOST, "us-east-1", lambda: None).headers("{}")


def test_frames_and_auth_do_not_import_botocore_or_websockets() -> None:
    import subprocess

    code = (
        "import sys, stub_runtime.appsync.frames, stub_runtime.appsync.auth; "
        "from stub_runtime.appsync import ApiKeyAuth; ApiKeyAuth('k','h').headers('{}'); "
        "print(sorted(m for m in ('botocore', 'websockets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_client_import_does_not_import_botocore() -> None:
    import subprocess

    code = (
        "import sys, stub_runtime.appsync.client, stub_runtime.appsync.reconnecting; "
        "print('botocore' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]
