"""An AWS AppSync Events emulator on loopback, faithful to ../shared/PROTOCOL.md.

Served by `livelambda cloud` on one port:
- `POST /event`                HTTP publish
- `WS   /event/realtime`       subprotocols `aws-appsync-event-ws` + `header-<base64url(json(auth))>`
- `GET  /_livelambda/stats`    counters and live connections (JSON), for tests and curious humans
- `GET|POST /_livelambda/faults`  fault injection, see faults.py

Where the protocol page leaves a choice, we answer as the real service does when we know it, and mark
the rest *(inferred)* below, so that a difference found against AWS is easy to fix in one place:
- An unauthenticated WebSocket is accepted, then answered `connection_error` (UnauthorizedException)
  on its first frame and closed with code 1000. *(inferred from the GraphQL realtime service)*
- WebSocket subscribe/publish accept a channel without its leading `/` (amplify-js sends them so);
  HTTP publish requires it (amplify-js adds it: "required in publish"). *(inferred)*
- An unknown namespace is BadRequestException "Invalid Channel Format". *(inferred)*
- Per-event failures (over 240 KB, not JSON) are listed in `failed` with `code` 400 and a message;
  the rest of the batch is delivered. *(inferred)*
- Unknown frame types: `error` / UnsupportedOperation "<type> not supported through the realtime
  channel" (the GraphQL realtime wording); malformed JSON: `error` / BadRequestException.
- A `ka` frame follows `connection_ack` at once, then one every `ka_interval_s`.
- Frames before `connection_init` are served (auth was checked on the upgrade). *(inferred)*
- `host` in auth objects must name this socket, `127.0.0.1:PORT` (or `localhost:PORT`), whatever
  Host header the client sends: see `api_hosts`.
- `publish_success` may reach the publisher before the `data` frames it caused, on the publisher's own
  subscriptions too: clients must not rely on an order between the two (the service promises none).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from devserver.cloud.faults import Faults, FaultSpecError
from devserver.cloud.options import CloudOptions
from devserver.cloud.sigv4 import SignatureError, verify_sigv4
from stub_runtime.channels import InvalidChannel, channel_matches, validate_channel

log = logging.getLogger("livelambda.cloud.appsync")

SUBPROTOCOL = "aws-appsync-event-ws"
AUTH_SUBPROTOCOL_PREFIX = "header-"
MAX_EVENTS_PER_PUBLISH = 5
MAX_EVENT_BYTES = 240 * 1024  # 245,760 bytes of UTF-8
UNAUTHORIZED_MESSAGE = "You are not authorized to make this call."
_FIRST_FRAME_TIMEOUT_S = 10.0  # how long a refused connection may stay open waiting to be told
_CLOSE_LOCK_TIMEOUT_S = 2.0


REALTIME_PATH = "/event/realtime"

class AppSyncError(Exception):
    """An error the service reports to the client as `{"errorType": ..., "message": ...}`."""

    def __init__(self, error_type: str, message: str, *, status: int = 400) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.status = status

    def errors(self) -> list[dict[str, str]]:
        return [{"errorType": self.error_type, "message": self.message}]


class Unauthorized(AppSyncError):
    """Authorization failed; `reason` (never sent to the client, as AWS does not) goes to our log."""

    def __init__(self, reason: str) -> None:
        super().__init__("UnauthorizedException", UNAUTHORIZED_MESSAGE, status=401)
        self.reason = reason


def bad_request(message: str) -> AppSyncError:
    return AppSyncError("BadRequestException", message)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _signed_bodies(value: Any) -> Callable[[], list[bytes]]:
    """The bodies a client may have signed for a WebSocket operation.

    PROTOCOL.md says "compact JSON"; JavaScript's JSON.stringify leaves non-ASCII as is while Python's
    json.dumps escapes it by default, so both spellings are accepted.
    """

    def bodies() -> list[bytes]:
        raw = _compact(value).encode()
        ascii_ = json.dumps(value, separators=(",", ":")).encode()
        return [raw] if raw == ascii_ else [raw, ascii_]

    return bodies


@dataclass
class Stats:
    connections_total: int = 0  # WebSocket connections accepted and authorized
    connections_refused: int = 0  # attempts that did not become a connection (faults, auth, protocol)
    connections_unauthorized: int = 0  # of which: failed authorization
    connections_stalled: int = 0  # of which: left unanswered by fault injection
    subscriptions_total: int = 0
    publishes: int = 0  # accepted publish requests, HTTP and WebSocket
    events_published: int = 0  # events accepted for delivery
    events_failed: int = 0  # events reported in `failed`
    events_delivered: int = 0  # `data` frames written to sockets (duplicates included)


@dataclass
class _Outgoing:
    text: str
    subscription_id: str
    not_before: float


@dataclass
class _Connection:
    """One accepted WebSocket. The reader (the endpoint coroutine) answers the client's frames directly;
    `data` frames go through `outbox` and a writer task, so that a slow subscriber never blocks a publisher
    and a delivery delay never holds back acks."""

    emulator: AppSyncEmulator
    websocket: WebSocket
    remote: str
    hosts: frozenset[str]  # what `host` in this connection's auth objects may say
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    connected_at: float = field(default_factory=time.time)
    subscriptions: dict[str, str] = field(default_factory=dict)  # id -> channel pattern
    outbox: asyncio.Queue[_Outgoing] = field(default_factory=asyncio.Queue)
    closed: bool = False
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "remote": self.remote,
            "connected_at": self.connected_at,
            "subscriptions": [{"id": k, "channel": v} for k, v in self.subscriptions.items()],
        }

    async def send(self, frame: dict[str, Any]) -> bool:
        return await self._write(_compact(frame))

    async def _write(self, text: str) -> bool:
        async with self.send_lock:
            return await self.write_holding_lock(text)

    async def write_holding_lock(self, text: str) -> bool:
        if self.closed:
            return False
        try:
            await self.websocket.send_text(text)
        except Exception:  # the peer is gone (uvicorn raises ClientDisconnected, RuntimeError...)
            self.closed = True
            return False
        return True

    def enqueue_data(self, subscription_id: str, event: str, delay_s: float) -> None:
        text = _compact({"type": "data", "id": subscription_id, "event": event})
        self.outbox.put_nowait(_Outgoing(text, subscription_id, time.monotonic() + delay_s))

    async def close(self, *, abrupt: bool) -> None:
        # Unregister at once, so that stats read right after a drop no longer count this connection.
        self.emulator.connections.pop(self.id, None)
        if abrupt and self._abort():
            return
        try:
            # A send stuck on a client that stopped reading holds the lock: do not wait for it forever.
            await asyncio.wait_for(self.send_lock.acquire(), _CLOSE_LOCK_TIMEOUT_S)
        except asyncio.TimeoutError:
            self._abort()
            return
        try:
            if not self.closed:
                self.closed = True
                await self.websocket.close(code=1011 if abrupt else 1000)
        except Exception:
            pass
        finally:
            self.send_lock.release()

    def _abort(self) -> bool:
        """Drop the TCP connection without a close frame (the client sees 1006); False if impossible."""
        transport = _transport_of(self.websocket)
        if transport is None:
            log.warning("cannot reach the transport of %s to drop it abruptly; closing with 1011", self.id)
            return False
        self.closed = True
        transport.abort()
        return True

    async def writer(self) -> None:
        faults = self.emulator.faults
        while True:
            item = await self.outbox.get()
            delay = item.not_before - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if item.subscription_id not in self.subscriptions:
                continue  # unsubscribed while the frame waited: the client no longer expects it
            if faults.before_data_frame():
                await self.close(abrupt=faults.drop_after_abrupt)
                return
            if not await self._write(item.text):
                return
            self.emulator.stats.events_delivered += 1
            if faults.after_data_frame():
                await self.close(abrupt=faults.drop_after_abrupt)
                return

    async def keepalive(self, interval_s: float) -> None:
        while await self.send({"type": "ka"}):
            await asyncio.sleep(interval_s)


def _transport_of(websocket: WebSocket) -> Any:
    """uvicorn's protocol object is behind the ASGI callables; its transport lets us drop the TCP link.

    ASGI has no "abort" message, so this is the only way to emulate a connection dying without a close
    frame. Returns None with a server that does not expose it.
    """
    for func in (getattr(websocket, "_receive", None), getattr(websocket, "_send", None)):
        transport = getattr(getattr(func, "__self__", None), "transport", None)
        if callable(getattr(transport, "abort", None)):  # asyncio's or uvloop's transport
            return transport
    return None


def _decode_auth_subprotocol(value: str) -> dict[str, Any] | None:
    encoded = value[len(AUTH_SUBPROTOCOL_PREFIX) :].replace("+", "-").replace("/", "_").rstrip("=")
    try:
        decoded = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (binascii.Error, ValueError):
        return None
    return decoded if isinstance(decoded, dict) else None


class AppSyncEmulator:
    """State of one emulated Event API: connections, subscriptions, counters, faults."""

    def __init__(self, options: CloudOptions) -> None:
        self.options = options
        self.api_key = options.api_key
        self.namespaces = frozenset(options.namespaces)
        self.faults = Faults()
        self.stats = Stats()
        self.connections: dict[str, _Connection] = {}

    # ----- authorization -------------------------------------------------------------------------

    def authorize(
        self, auth: object, *, expected_hosts: frozenset[str], bodies: Callable[[], Iterable[bytes]]
    ) -> None:
        """Check an API_KEY or AWS_IAM authorization object; raise Unauthorized.

        `expected_hosts`: see `api_hosts`; `bodies`: what an IAM client may have signed (computed lazily).
        """
        if not isinstance(auth, Mapping):
            raise Unauthorized("no authorization object")
        headers = {str(k).lower(): v for k, v in auth.items() if isinstance(v, str)}
        if "x-api-key" in headers:
            if self.api_key is None or not hmac.compare_digest(
                headers["x-api-key"].encode(), self.api_key.encode()
            ):
                raise Unauthorized("wrong x-api-key")
            host = headers.get("host")
            if host is None or host.lower() not in expected_hosts:
                wanted = " or ".join(sorted(expected_hosts))
                raise Unauthorized(f"host {host!r} is not this API's host, {wanted}")
            return
        if headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"):
            try:
                verify_sigv4(
                    headers,
                    bodies(),
                    credentials=self.options.iam_credentials,
                    region=self.options.region,
                    expected_hosts=expected_hosts,
                )
            except SignatureError as exc:
                raise Unauthorized(f"SigV4: {exc}") from None
            return
        raise Unauthorized("neither x-api-key nor a SigV4 Authorization header (other modes unsupported)")

    # ----- publish and fan-out ---------------------------------------------------------------------

    def publish(self, channel: object, events: object) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Validate a publish (channel already normalized), deliver its events; (successful, failed)."""
        try:
            validate_channel(channel, subscribe=False, namespaces=self.namespaces)  # type: ignore[arg-type]
        except InvalidChannel as exc:
            log.info("publish refused: %s", exc)
            raise bad_request(exc.message) from None
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise bad_request("events must be a list of JSON values encoded as strings")
        if not events:
            raise bad_request("events must contain at least one event")
        if len(events) > MAX_EVENTS_PER_PUBLISH:
            raise bad_request(
                f"Too many events in one publish: {len(events)} (the maximum is {MAX_EVENTS_PER_PUBLISH})"
            )
        assert isinstance(channel, str)
        successful: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            entry: dict[str, Any] = {"identifier": str(uuid.uuid4()), "index": index}
            problem = self._event_problem(event)
            if problem is None:
                successful.append(entry)
                self._fan_out(channel, event)
            else:
                failed.append({**entry, "code": 400, "message": problem})
        self.stats.publishes += 1
        self.stats.events_published += len(successful)
        self.stats.events_failed += len(failed)
        return successful, failed

    @staticmethod
    def _event_problem(event: str) -> str | None:
        size = len(event.encode())
        if size > MAX_EVENT_BYTES:
            return f"Event size {size} bytes exceeds the maximum of {MAX_EVENT_BYTES} bytes (240 KB)"
        try:
            json.loads(event)
        except ValueError:
            return "Event is not a valid JSON value"
        return None

    def _fan_out(self, channel: str, event: str) -> None:
        delay_s = self.faults.delay_delivery_s
        copies = self.faults.copies()
        for conn in self.connections.values():
            for sub_id, pattern in conn.subscriptions.items():
                if channel_matches(pattern, channel):
                    for _ in range(copies):
                        conn.enqueue_data(sub_id, event, delay_s)

    # ----- observability and faults ----------------------------------------------------------------

    def stats_snapshot(self) -> dict[str, Any]:
        conns = list(self.connections.values())
        return {
            "connections_current": len(conns),
            **vars(self.stats),
            "subscriptions": sum(len(c.subscriptions) for c in conns),
            "connections": [c.info() for c in conns],
            "faults": self.faults.snapshot(),
        }

    async def drop_all(self, *, abrupt: bool) -> int:
        conns = list(self.connections.values())
        await asyncio.gather(*(c.close(abrupt=abrupt) for c in conns))
        return len(conns)

    # ----- WebSocket -------------------------------------------------------------------------------

    async def serve_websocket(self, websocket: WebSocket) -> None:
        client = websocket.client
        remote = f"{client.host}:{client.port}" if client else "?"
        offered: list[str] = list(websocket.scope.get("subprotocols", []))
        if self.faults.refusing():
            self.stats.connections_refused += 1
            log.info("refused WebSocket from %s (fault injection)", remote)
            await _deny(websocket, AppSyncError("ServiceUnavailable", "Connections refused", status=503))
            return
        stall_s = self.faults.stall_s()
        if stall_s > 0:
            # Never answer the upgrade: the client sees what a black-holed network gives it.
            self.stats.connections_refused += 1
            self.stats.connections_stalled += 1
            log.info("stalling WebSocket from %s for %.1f s (fault injection)", remote, stall_s)
            await asyncio.sleep(stall_s)
            await _deny(websocket, AppSyncError("ServiceUnavailable", "Connections stalled", status=503))
            return
        if SUBPROTOCOL not in offered:
            self.stats.connections_refused += 1
            await _deny(websocket, bad_request(f"The {SUBPROTOCOL} subprotocol is required"))
            return
        hosts = api_hosts(websocket.scope)
        # Plain HTTP headers on the upgrade, as some SDKs send them; their `host` is the Host header.
        auth: object = dict(websocket.headers)
        for proto in offered:
            if proto.startswith(AUTH_SUBPROTOCOL_PREFIX):
                auth = _decode_auth_subprotocol(proto)
                break
        await websocket.accept(subprotocol=SUBPROTOCOL)
        try:
            self.authorize(auth, expected_hosts=hosts, bodies=lambda: [b"{}"])
        except Unauthorized as exc:
            self.stats.connections_refused += 1
            self.stats.connections_unauthorized += 1
            log.warning("unauthorized WebSocket connection from %s: %s", remote, exc.reason)
            await _refuse_after_first_frame(websocket, exc)
            return
        conn = _Connection(self, websocket, remote, hosts)
        self.connections[conn.id] = conn
        self.stats.connections_total += 1
        log.info("connection %s from %s", conn.id, remote)
        conn.tasks.append(asyncio.create_task(conn.writer()))
        try:
            await self._read_frames(conn)
        finally:
            conn.closed = True
            for task in conn.tasks:
                task.cancel()
            self.connections.pop(conn.id, None)
            log.info("connection %s closed", conn.id)

    async def _read_frames(self, conn: _Connection) -> None:
        while True:
            message = await conn.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                try:
                    text = (message.get("bytes") or b"").decode()
                except UnicodeDecodeError:
                    text = ""
            try:
                await self._handle_frame(conn, text)
            except Exception:  # our bug: tell the client, keep the connection, as a service would
                log.exception("error handling a frame on %s", conn.id)
                error = AppSyncError("InternalFailure", "An internal error occurred")
                await conn.send({"type": "error", "errors": error.errors()})

    async def _handle_frame(self, conn: _Connection, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:  # malformed JSON gets the same answer as valid JSON that is not an object
            frame = None
        if not isinstance(frame, dict):
            error = bad_request("Message must be a JSON object")
            await conn.send({"type": "error", "errors": error.errors()})
            return
        kind = frame.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            error = AppSyncError("UnsupportedOperation", f"{kind} not supported through the realtime channel")
            reply: dict[str, Any] = {"type": "error", "errors": error.errors()}
            if isinstance(frame.get("id"), str):
                reply = {"type": "error", "id": frame["id"], "errors": error.errors()}
            await conn.send(reply)
            return
        await handler(self, conn, frame)

    async def _on_connection_init(self, conn: _Connection, frame: dict[str, Any]) -> None:
        timeout_ms = self.options.connection_timeout_ms
        # Top-level is what the service sends; one SDK reads payload.connectionTimeoutMs: send both.
        await conn.send(
            {
                "type": "connection_ack",
                "connectionTimeoutMs": timeout_ms,
                "payload": {"connectionTimeoutMs": timeout_ms},
            }
        )
        if not any(t.get_name() == "ka" for t in conn.tasks):
            conn.tasks.append(asyncio.create_task(conn.keepalive(self.options.ka_interval_s), name="ka"))

    async def _on_subscribe(self, conn: _Connection, frame: dict[str, Any]) -> None:
        sub_id = frame.get("id")
        if not isinstance(sub_id, str) or not sub_id:
            error = bad_request("Subscription id is required")
            await conn.send({"type": "subscribe_error", "errors": error.errors()})
            return
        channel = frame.get("channel")
        try:
            self.authorize(
                frame.get("authorization"),
                expected_hosts=conn.hosts,
                bodies=_signed_bodies({"channel": channel}),
            )
            if sub_id in conn.subscriptions:
                raise bad_request(f"Subscription id {sub_id} is already in use on this connection")
            pattern = _with_leading_slash(channel)
            try:
                validate_channel(pattern, subscribe=True, namespaces=self.namespaces)  # type: ignore[arg-type]
            except InvalidChannel as exc:
                log.info("subscribe refused: %s", exc)
                raise bad_request(exc.message) from None
        except AppSyncError as exc:
            if isinstance(exc, Unauthorized):
                log.warning("unauthorized subscribe on %s: %s", conn.id, exc.reason)
            await conn.send({"type": "subscribe_error", "id": sub_id, "errors": exc.errors()})
            return
        conn.subscriptions[sub_id] = pattern  # type: ignore[assignment]
        self.stats.subscriptions_total += 1
        await conn.send({"type": "subscribe_success", "id": sub_id})

    async def _on_unsubscribe(self, conn: _Connection, frame: dict[str, Any]) -> None:
        sub_id = frame.get("id")
        if isinstance(sub_id, str) and conn.subscriptions.pop(sub_id, None) is not None:
            await conn.send({"type": "unsubscribe_success", "id": sub_id})
            return
        error = bad_request(f"Subscription id {sub_id} not found")
        reply: dict[str, Any] = {"type": "unsubscribe_error", "errors": error.errors()}
        if isinstance(sub_id, str):
            reply = {"type": "unsubscribe_error", "id": sub_id, "errors": error.errors()}
        await conn.send(reply)

    async def _on_publish(self, conn: _Connection, frame: dict[str, Any]) -> None:
        pub_id = frame.get("id")
        if not isinstance(pub_id, str) or not pub_id:
            error = bad_request("Publish id is required")
            await conn.send({"type": "publish_error", "errors": error.errors()})
            return
        channel, events = frame.get("channel"), frame.get("events")
        try:
            self.authorize(
                frame.get("authorization"),
                expected_hosts=conn.hosts,
                bodies=_signed_bodies({"channel": channel, "events": events}),
            )
            successful, failed = self.publish(_with_leading_slash(channel), events)
        except AppSyncError as exc:
            if isinstance(exc, Unauthorized):
                log.warning("unauthorized publish on %s: %s", conn.id, exc.reason)
            await conn.send({"type": "publish_error", "id": pub_id, "errors": exc.errors()})
            return
        reply = _compact(
            {"type": "publish_success", "id": pub_id, "successful": successful, "failed": failed}
        )
        async with conn.send_lock:  # the publisher's own data frames, if any, follow its ack
            if successful:
                # The other subscribers' writers go first: their data frames are what the system waits
                # on, and the ack wakes the publisher, which would compete with them for a CPU.
                await asyncio.sleep(0)
            await conn.write_holding_lock(reply)

    _handlers: ClassVar[Mapping[str, Callable[[AppSyncEmulator, _Connection, dict[str, Any]], Any]]] = {
        "connection_init": _on_connection_init,
        "subscribe": _on_subscribe,
        "unsubscribe": _on_unsubscribe,
        "publish": _on_publish,
    }

    # ----- HTTP publish ----------------------------------------------------------------------------

    async def serve_http_publish(self, request: Request) -> Response:
        body = await request.body()
        try:
            hosts = api_hosts(request.scope)
            self.authorize(dict(request.headers), expected_hosts=hosts, bodies=lambda: [body])
            try:
                payload = json.loads(body)
            except ValueError:
                raise bad_request("Request body is not valid JSON") from None
            if not isinstance(payload, dict):
                raise bad_request("Request body must be a JSON object")
            successful, failed = self.publish(payload.get("channel"), payload.get("events"))
        except AppSyncError as exc:
            if isinstance(exc, Unauthorized):
                log.warning("unauthorized HTTP publish: %s", exc.reason)
            return JSONResponse({"errors": exc.errors()}, status_code=exc.status)
        return JSONResponse({"failed": failed, "successful": successful})


def api_hosts(scope: Mapping[str, Any]) -> frozenset[str]:
    """The emulator's "HTTP host" as auth objects must name it: the address and port the request reached.

    In AWS, `host` is the API's one HTTP host, even on the realtime connection. Here that host is this
    socket: `127.0.0.1:PORT`, or `localhost:PORT` for a client that dialled that name. The request's own
    Host header is not trusted for this, since the client writes it.
    """
    server = scope.get("server") or ("127.0.0.1", 0)
    address, port = server[0], server[1]
    literal = f"[{address}]" if ":" in address else address
    return frozenset({f"{literal}:{port}".lower(), f"localhost:{port}"})


def _with_leading_slash(channel: object) -> object:
    if isinstance(channel, str) and channel and not channel.startswith("/"):
        return "/" + channel
    return channel


async def _deny(websocket: WebSocket, error: AppSyncError) -> None:
    """Refuse a handshake with an HTTP status, as a load balancer in front of the service would."""
    response = JSONResponse({"errors": error.errors()}, status_code=error.status)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # the server lacks the websocket.http.response extension: plain 403
        await websocket.close()


async def _refuse_after_first_frame(websocket: WebSocket, error: AppSyncError) -> None:
    try:
        async with asyncio.timeout(_FIRST_FRAME_TIMEOUT_S):
            message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        await websocket.send_text(_compact({"type": "connection_error", "errors": error.errors()}))
        await websocket.close(code=1000)  # the service closes with 1000 even on failure
    except Exception:  # timeout, or the client left first: nothing more to tell it
        try:
            await websocket.close(code=1000)
        except Exception:
            pass


def build_router(emulator: AppSyncEmulator) -> APIRouter:
    """Routes of the emulator: HTTP publish and the `/_livelambda/` test endpoints. (The realtime
    WebSocket is not routed by FastAPI: see server.realtime_first.)"""
    router = APIRouter()

    @router.post("/event")
    async def http_publish(request: Request) -> Response:
        return await emulator.serve_http_publish(request)

    @router.get("/_livelambda/stats")
    async def stats() -> dict[str, Any]:
        return emulator.stats_snapshot()

    @router.get("/_livelambda/faults")
    async def get_faults() -> dict[str, Any]:
        return {"faults": emulator.faults.snapshot()}

    @router.post("/_livelambda/faults")
    async def set_faults(request: Request) -> Response:
        try:
            spec = json.loads(await request.body() or b"{}")
            if not isinstance(spec, dict):
                raise FaultSpecError("the body must be a JSON object")
            drop = emulator.faults.apply(spec)
        except (ValueError, FaultSpecError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        dropped = await emulator.drop_all(abrupt=drop.abrupt) if drop else 0
        if set(spec) - {"reset"}:  # tests reset around every test: keep the log readable
            log.info("faults %s -> %s (dropped %d connections)", spec, emulator.faults.snapshot(), dropped)
        return JSONResponse({"faults": emulator.faults.snapshot(), "dropped": dropped})

    return router
