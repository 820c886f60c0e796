"""Sans-I/O AppSync Events frames: build what the client sends, parse what the server sends.

No sockets here: client frames' `encode()` gives the JSON text to send, and `parse_server_frame(text)`
turns a received text frame into a typed object (`session.AppSyncSession` routes them). The wire is
described in ../shared/PROTOCOL.md.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stub_runtime.errors import RemoteProtocolError
from stub_runtime.wire import compact_json, new_id

SUBPROTOCOL = "aws-appsync-event-ws"
MAX_EVENTS_PER_PUBLISH = 5
MAX_EVENT_BYTES = 240 * 1024
DEFAULT_CONNECTION_TIMEOUT_MS = 300_000


# --------------------------------------------------------------------------------------------- helpers
def header_subprotocol(auth_headers: Mapping[str, str]) -> str:
    """`header-` + base64url (no padding) of the compact JSON auth header object."""
    raw = json.dumps(dict(auth_headers), separators=(",", ":")).encode()
    return "header-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def subprotocols(auth_headers: Mapping[str, str]) -> list[str]:
    """The two subprotocols a client offers when it opens the WebSocket."""
    return [SUBPROTOCOL, header_subprotocol(auth_headers)]


# Bodies that IAM signs (PROTOCOL.md "Authorization"): compact JSON.
def connect_body() -> str:
    return "{}"


def subscribe_body(channel: str) -> str:
    return compact_json({"channel": channel})


def publish_body(channel: str, events: Sequence[str]) -> str:
    return compact_json({"channel": channel, "events": list(events)})


# ------------------------------------------------------------------------------------------ records
class _Record:
    """A small value object: plain slotted classes, because a @dataclass(slots=True) costs 0.33 ms of
    import against 0.01 ms (measured: ~7 ms of the stub's cold start for its twenty-odd records)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # some hold dicts or lists

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"


class ServiceErrorDetail(_Record):
    """One entry of a server `errors` list."""

    __slots__ = _fields = ("error_type", "message", "error_code")

    def __init__(self, error_type: str, message: str, error_code: int | str | None = None) -> None:
        self.error_type = error_type
        self.message = message
        self.error_code = error_code


class AppSyncServiceError(RemoteProtocolError):
    """AppSync answered with an `errors` list (connection_error, subscribe_error, publish_error, ...).

    `error_type` is the first entry's errorType (e.g. "UnauthorizedException"); `errors` holds them all.
    """

    error_type = "AppSync.ServiceError"

    def __init__(
        self, context: str, errors: Sequence[ServiceErrorDetail], *, hint: str = "", status: int | None = None
    ) -> None:
        self.context = context
        self.status = status  # the HTTP status, for an HTTP publish
        self.errors = list(errors)
        if self.errors:
            self.error_type = self.errors[0].error_type
            first = self.errors[0]
            code = f" (code {first.error_code})" if first.error_code is not None else ""
            detail = f"{first.error_type}{code}: {first.message}"
            if len(self.errors) > 1:
                detail += f" (+{len(self.errors) - 1} more)"
        else:
            detail = "an empty errors list"
        msg = f"AppSync rejected {context}: {detail}"
        super().__init__(msg + (f". {hint}" if hint else ""))


class _Frame(_Record):
    __slots__ = ()
    type = ""


# ------------------------------------------------------------------------------------------ client frames
class _ClientFrame(_Frame):
    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type}

    def encode(self) -> str:
        return compact_json(self.to_json())


class ConnectionInit(_ClientFrame):
    __slots__ = ()
    type = "connection_init"


class Subscribe(_ClientFrame):
    __slots__ = _fields = ("channel", "authorization", "id")
    type = "subscribe"

    def __init__(self, channel: str, authorization: Mapping[str, str], id: str | None = None) -> None:
        self.channel = channel
        self.authorization = authorization
        self.id = id or new_id()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "channel": self.channel,
            "authorization": dict(self.authorization),
        }


class Unsubscribe(_ClientFrame):
    __slots__ = _fields = ("id",)
    type = "unsubscribe"

    def __init__(self, id: str) -> None:
        self.id = id

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id}


class Publish(_ClientFrame):
    __slots__ = _fields = ("channel", "events", "authorization", "id")
    type = "publish"

    def __init__(
        self, channel: str, events: Sequence[str], authorization: Mapping[str, str], id: str | None = None
    ) -> None:
        self.channel = channel
        self.events = list(events)
        self.authorization = authorization
        self.id = id or new_id()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "channel": self.channel,
            "events": list(self.events),
            "authorization": dict(self.authorization),
        }


# ------------------------------------------------------------------------------------------ server frames
class ConnectionAck(_Frame):
    __slots__ = _fields = ("connection_timeout_ms",)
    type = "connection_ack"

    def __init__(self, connection_timeout_ms: int = DEFAULT_CONNECTION_TIMEOUT_MS) -> None:
        self.connection_timeout_ms = connection_timeout_ms


class ConnectionError(_Frame):  # the protocol's name (shadows the builtin here only); not an exception
    __slots__ = _fields = ("errors",)
    type = "connection_error"

    def __init__(self, errors: Sequence[ServiceErrorDetail]) -> None:
        self.errors = tuple(errors)


class KeepAlive(_Frame):
    __slots__ = ()
    type = "ka"


class _IdFrame(_Frame):
    """A frame that only carries the `id` it answers."""

    __slots__ = _fields = ("id",)

    def __init__(self, id: str) -> None:
        self.id = id


class _ErrorsFrame(_Frame):
    """A frame that carries the `id` it answers and an `errors` list."""

    __slots__ = _fields = ("id", "errors")

    def __init__(self, id: str, errors: Sequence[ServiceErrorDetail]) -> None:
        self.id = id
        self.errors = tuple(errors)


class SubscribeSuccess(_IdFrame):
    __slots__ = ()
    type = "subscribe_success"


class SubscribeError(_ErrorsFrame):
    __slots__ = ()
    type = "subscribe_error"


class Data(_Frame):
    """One event delivered to subscription `id`; `event` is decoded, `raw` is the JSON string as sent."""

    __slots__ = _fields = ("id", "event", "raw")
    type = "data"

    def __init__(self, id: str, event: Any, raw: str) -> None:
        self.id = id
        self.event = event
        self.raw = raw


class BroadcastError(_ErrorsFrame):
    __slots__ = ()
    type = "broadcast_error"


class UnsubscribeSuccess(_IdFrame):
    __slots__ = ()
    type = "unsubscribe_success"


class UnsubscribeError(_ErrorsFrame):
    __slots__ = ()
    type = "unsubscribe_error"


class PublishedEntry(_Record):
    __slots__ = _fields = ("identifier", "index")

    def __init__(self, identifier: str, index: int) -> None:
        self.identifier = identifier
        self.index = index


class FailedEntry(_Record):
    """An event the service (or the client, `local=True`) refused; `index` is in the caller's list."""

    __slots__ = _fields = ("identifier", "index", "code", "message", "local")

    def __init__(
        self, identifier: str | None, index: int, code: int | str | None, message: str, local: bool = False
    ) -> None:
        self.identifier = identifier
        self.index = index
        self.code = code
        self.message = message
        self.local = local


class PublishSuccess(_Frame):
    __slots__ = _fields = ("id", "successful", "failed")
    type = "publish_success"

    def __init__(self, id: str, successful: Sequence[PublishedEntry], failed: Sequence[FailedEntry]) -> None:
        self.id = id
        self.successful = tuple(successful)
        self.failed = tuple(failed)


class PublishError(_ErrorsFrame):
    __slots__ = ()
    type = "publish_error"


class Error(_Frame):
    """A generic `error` frame; `id` is set when it answers a particular request."""

    __slots__ = _fields = ("id", "errors")
    type = "error"

    def __init__(self, id: str | None, errors: Sequence[ServiceErrorDetail]) -> None:
        self.id = id
        self.errors = tuple(errors)


ServerFrame = (
    ConnectionAck
    | ConnectionError
    | KeepAlive
    | SubscribeSuccess
    | SubscribeError
    | Data
    | BroadcastError
    | UnsubscribeSuccess
    | UnsubscribeError
    | PublishSuccess
    | PublishError
    | Error
)

# ------------------------------------------------------------------------------------------ parsing
def _bad(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed AppSync frame: {what}")


def _load_object(text: str | bytes) -> dict[str, Any]:
    if isinstance(text, bytes):
        raise _bad("the server sent a binary frame; AppSync Events frames are JSON text")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise _bad(f"not JSON ({exc}): {text[:80]!r}") from None
    if not isinstance(obj, dict):
        raise _bad(f"expected a JSON object, got {type(obj).__name__}")
    if not isinstance(obj.get("type"), str):
        raise _bad("no string `type` field")
    return obj


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _bad(f"`{obj.get('type')}` needs a non-empty string `{key}`")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{what} must be an integer, got {value!r}")
    return value


def parse_errors(value: Any) -> tuple[ServiceErrorDetail, ...]:
    """Parse a server `errors` list; raises RemoteProtocolError when it is not one."""
    if not isinstance(value, list):
        raise _bad("`errors` must be a list")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise _bad("each `errors` entry must be an object")
        etype = item.get("errorType")
        msg = item.get("message", "")
        code = item.get("errorCode")
        if not isinstance(etype, str) or not etype or not isinstance(msg, str):
            raise _bad(f"an `errors` entry needs a string errorType and message: {item!r}")
        if code is not None and (isinstance(code, bool) or not isinstance(code, (int, str))):
            raise _bad(f"`errorCode` must be an integer or string: {item!r}")
        out.append(ServiceErrorDetail(etype, msg, code))
    return tuple(out)


PublishEntries = tuple[tuple[PublishedEntry, ...], tuple[FailedEntry, ...]]


def parse_publish_entries(obj: Mapping[str, Any]) -> PublishEntries:
    """The `successful` / `failed` lists of a publish answer (WebSocket frame or HTTP 200 body).

    A failed entry carries `code`/`message` or `errorCode`/`errorMessage`: both are accepted.
    """
    ok_raw, failed_raw = obj.get("successful", []), obj.get("failed", [])
    if not isinstance(ok_raw, list) or not isinstance(failed_raw, list):
        raise _bad("`successful` and `failed` must be lists")
    successful = []
    for item in ok_raw:
        if not isinstance(item, dict) or not isinstance(item.get("identifier"), str):
            raise _bad(f"a `successful` entry needs a string identifier: {item!r}")
        successful.append(PublishedEntry(item["identifier"], _int(item.get("index"), "`index`")))
    failed = []
    for item in failed_raw:
        if not isinstance(item, dict):
            raise _bad(f"a `failed` entry must be an object: {item!r}")
        ident = item.get("identifier")
        code = item.get("code", item.get("errorCode"))
        msg = item.get("message", item.get("errorMessage", ""))
        if ident is not None and not isinstance(ident, str):
            raise _bad(f"a `failed` entry's identifier must be a string: {item!r}")
        if code is not None and (isinstance(code, bool) or not isinstance(code, (int, str))):
            raise _bad(f"a `failed` entry's code must be an integer or string: {item!r}")
        if not isinstance(msg, str):
            raise _bad(f"a `failed` entry's message must be a string: {item!r}")
        failed.append(FailedEntry(ident, _int(item.get("index"), "`index`"), code, msg))
    return tuple(successful), tuple(failed)


def _parse_ack(obj: Mapping[str, Any]) -> ConnectionAck:
    timeout = obj.get("connectionTimeoutMs")
    if timeout is None:
        payload = obj.get("payload")
        if isinstance(payload, dict):
            timeout = payload.get("connectionTimeoutMs")
    if timeout is None:
        return ConnectionAck()
    timeout = _int(timeout, "`connectionTimeoutMs`")
    if timeout <= 0:
        raise _bad(f"`connectionTimeoutMs` must be positive, got {timeout}")
    return ConnectionAck(timeout)


def _parse_data(obj: Mapping[str, Any]) -> Data:
    raw = obj.get("event")
    if not isinstance(raw, str):
        raise _bad("`data.event` must be a JSON-encoded string")
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise _bad(f"`data.event` is not valid JSON ({exc})") from None
    return Data(_str(obj, "id"), event, raw)


def _parse_publish_success(obj: Mapping[str, Any]) -> PublishSuccess:
    successful, failed = parse_publish_entries(obj)
    return PublishSuccess(_str(obj, "id"), successful, failed)


def _parse_error(obj: Mapping[str, Any]) -> Error:
    fid = obj.get("id")
    if fid is not None and not isinstance(fid, str):
        raise _bad("`error.id` must be a string")
    return Error(fid or None, parse_errors(obj.get("errors")))


_SERVER_PARSERS: dict[str, Callable[[Mapping[str, Any]], ServerFrame]] = {
    "connection_ack": _parse_ack,
    "connection_error": lambda o: ConnectionError(parse_errors(o.get("errors"))),
    "ka": lambda o: KeepAlive(),
    "subscribe_success": lambda o: SubscribeSuccess(_str(o, "id")),
    "subscribe_error": lambda o: SubscribeError(_str(o, "id"), parse_errors(o.get("errors"))),
    "data": _parse_data,
    "broadcast_error": lambda o: BroadcastError(_str(o, "id"), parse_errors(o.get("errors"))),
    "unsubscribe_success": lambda o: UnsubscribeSuccess(_str(o, "id")),
    "unsubscribe_error": lambda o: UnsubscribeError(_str(o, "id"), parse_errors(o.get("errors"))),
    "publish_success": _parse_publish_success,
    "publish_error": lambda o: PublishError(_str(o, "id"), parse_errors(o.get("errors"))),
    "error": _parse_error,
}


def acked(frame: ServerFrame, endpoint: str) -> ConnectionAck | None:
    """While waiting for connection_ack: the ack, None for a `ka` (keep waiting), or the error it is."""
    if isinstance(frame, ConnectionAck):
        return frame
    if isinstance(frame, ConnectionError):
        raise AppSyncServiceError("the connection", frame.errors)
    if isinstance(frame, KeepAlive):
        return None
    raise RemoteProtocolError(f"expected connection_ack, got {type(frame).__name__} from {endpoint}")


def parse_server_frame(text: str | bytes) -> ServerFrame:
    """Parse one frame the server sent. Raises RemoteProtocolError on anything malformed or unknown."""
    obj = _load_object(text)
    parser = _SERVER_PARSERS.get(obj["type"])
    if parser is None:
        raise _bad(f"unknown frame type {obj['type']!r}")
    return parser(obj)
