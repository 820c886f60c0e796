"""An AWS AppSync Events emulator on loopback, faithful to ../shared/PROTOCOL.md.

Served by `livelambda cloud` on one port:
- `POST /event`                HTTP publish
- `WS   /event/realtime`       subprotocols `aws-appsync-event-ws` + `header-<base64url(json(auth))>`
- `GET  /_livelambda/stats`    counters and live connections (JSON), for tests and curious humans
- `GET|POST /_livelambda/faults`  fault injection, see faults.py

The control plane (appsync_control.py, boto3's `appsync` client) decides what exists: the namespaces
are the built-in ones (`options.namespaces`) plus those created on any API, a namespace's auth modes
limit who may publish and subscribe on it, and the keys it creates authorize next to `--api-key`.

Where the protocol page leaves a choice, we answer as the real service does when we know it, and mark
the rest *(inferred)* below, so that a difference found against AWS is easy to fix in one place:
- An unauthenticated WebSocket is accepted, then answered `connection_error` (UnauthorizedException)
  on its first frame and closed with code 1000. *(inferred from the GraphQL realtime service)*
- WebSocket subscribe/publish accept a channel without its leading `/` (amplify-js sends them so);
  HTTP publish requires it (amplify-js adds it: "required in publish"). *(inferred)*
- An unknown namespace is BadRequestException "Invalid Channel Format". *(inferred)*
- A publish or subscribe with an auth type its namespace does not allow (its publishAuthModes /
  subscribeAuthModes, else its API's defaults) is UnauthorizedException, as a wrong key is. *(inferred)*
- Per-event failures (over 240 KB, not JSON) are listed in `failed` with `code` 400 and a message;
  the rest of the batch is delivered. *(inferred)*
- Unknown frame types: `error` / UnsupportedOperation "<type> not supported through the realtime
  channel" (the GraphQL realtime wording); malformed JSON: `error` / BadRequestException.
- A `ka` frame follows `connection_ack` at once, then one every `ka_interval_s`.
- Frames before `connection_init` are served (auth was checked on the upgrade). *(inferred)* But a
  connection that has not sent `connection_init` within 10 s of its upgrade is closed with 1000
  (realtime.py; `LIVELAMBDA_INIT_TIMEOUT_S`). *(inferred: no documented timeout)*
- At most 100 subscriptions per connection (AWS's quota, "Subscriptions per connection: 100"); the
  101st is `subscribe_error` MaxSubscriptionsReachedError (the type is in PROTOCOL.md; the message
  wording is *(inferred)*), checked after auth and the channel, as a quota is.
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from websockets.http11 import Request as UpgradeRequest

from devserver.cloud.appsync_control import API_KEY, AWS_IAM, EventApiStore
from devserver.cloud.faults import Faults, FaultSpecError
from devserver.cloud.options import CloudOptions
from devserver.cloud.realtime import RealtimeConnection
from devserver.cloud.sigv4 import SignatureError, verify_sigv4
from stub_runtime.channels import InvalidChannel, channel_matches, validate_channel
from stub_runtime.errors import CallerFault
from stub_runtime.wire import compact_json, new_id, publish_success_frame

log = logging.getLogger("livelambda.cloud.appsync")

SUBPROTOCOL = "aws-appsync-event-ws"
AUTH_SUBPROTOCOL_PREFIX = "header-"
MAX_EVENTS_PER_PUBLISH = 5
MAX_EVENT_BYTES = 240 * 1024  # 245,760 bytes of UTF-8
MAX_SUBSCRIPTIONS_PER_CONNECTION = 100  # AWS's quota (each publish walks every subscription)
UNAUTHORIZED_MESSAGE = "You are not authorized to make this call."


REALTIME_PATH = "/event/realtime"

class AppSyncError(CallerFault):
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


def _signed_bodies(value: Any) -> Callable[[], list[bytes]]:
    """The bodies a client may have signed for a WebSocket operation.

    PROTOCOL.md says "compact JSON"; JavaScript's JSON.stringify leaves non-ASCII as is while Python's
    json.dumps escapes it by default, so both spellings are accepted.
    """

    def bodies() -> list[bytes]:
        raw = compact_json(value).encode()
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
    frames_rejected: int = 0  # WebSocket frames answered with an error (error, *_error)
    http_rejected: int = 0  # HTTP publishes answered with an error status
    internal_errors: int = 0  # frames that raised in the emulator (a bug of ours: InternalFailure)


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
        self.builtin_namespaces = frozenset(options.namespaces)
        # What the control plane created, in the shape the hot path reads: a frozenset (the channel
        # validation cache keys on it) and namespace -> allowed auth types, replaced on each change.
        self.namespaces = self.builtin_namespaces
        self.publish_modes: Mapping[str, frozenset[str]] = {}
        self.subscribe_modes: Mapping[str, frozenset[str]] = {}
        self.control = EventApiStore(region=options.region, on_change=self._follow_control_plane)
        self.faults = Faults()
        if options.faults:  # `livelambda cloud --refuse-connections-for ...`: in force from the start
            self.faults.apply(dict(options.faults))
            log.info("faults at start: %s", self.faults.snapshot())
        self._fault_timer: asyncio.TimerHandle | None = None
        self.stats = Stats()
        self.connections: dict[str, RealtimeConnection] = {}

    # ----- the control plane's view --------------------------------------------------------------

    def _follow_control_plane(self) -> None:
        control, builtin = self.control, self.builtin_namespaces
        self.namespaces = builtin | control.namespace_names
        # A built-in namespace takes both auth types, whatever a same-named created one says.
        self.publish_modes = {n: m for n, m in control.publish_modes.items() if n not in builtin}
        self.subscribe_modes = {n: m for n, m in control.subscribe_modes.items() if n not in builtin}

    @staticmethod
    def _mode_refused(namespace: str, auth_type: str, action: str) -> Unauthorized:
        return Unauthorized(f"namespace {namespace!r} does not allow {auth_type} to {action}")

    # ----- authorization -------------------------------------------------------------------------

    def authorize(
        self, auth: object, *, expected_hosts: frozenset[str], bodies: Callable[[], Iterable[bytes]]
    ) -> str:
        """Check an API_KEY or AWS_IAM authorization object; return its auth type, or raise Unauthorized.

        `expected_hosts`: see `api_hosts`; `bodies`: what an IAM client may have signed (computed lazily).
        """
        if not isinstance(auth, Mapping):
            raise Unauthorized("no authorization object")
        headers = {str(k).lower(): v for k, v in auth.items() if isinstance(v, str)}
        if "x-api-key" in headers:
            key = headers["x-api-key"]
            if not (
                self.api_key is not None and hmac.compare_digest(key.encode(), self.api_key.encode())
            ) and not self.control.api_key_valid(key):  # a key created with CreateApiKey, still live
                raise Unauthorized("wrong x-api-key (unknown, expired or deleted)")
            host = headers.get("host")
            if host is None or host.lower() not in expected_hosts:
                wanted = " or ".join(sorted(expected_hosts))
                raise Unauthorized(f"host {host!r} is not this API's host, {wanted}")
            return API_KEY
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
            return AWS_IAM
        raise Unauthorized("neither x-api-key nor a SigV4 Authorization header (other modes unsupported)")

    # ----- publish and fan-out ---------------------------------------------------------------------

    def publish(
        self, channel: object, events: object, *, auth_type: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Validate a publish (channel already normalized, made with `auth_type`), deliver its events;
        (successful, failed)."""
        try:
            segments = validate_channel(channel, subscribe=False, namespaces=self.namespaces)  # type: ignore[arg-type]
        except InvalidChannel as exc:
            log.info("publish refused: %s", exc)
            raise bad_request(exc.message) from None
        allowed = self.publish_modes.get(segments[0])  # None: any auth type (see __init__)
        if allowed is not None and auth_type not in allowed:
            raise self._mode_refused(segments[0], auth_type, "publish")
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
            entry: dict[str, Any] = {"identifier": new_id(), "index": index}
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
        for conn in list(self.connections.values()):  # a fault may drop one on the way
            for sub_id, pattern in list(conn.subscriptions.items()):
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
            **self.control.counts(),  # apis, channel_namespaces, api_keys
        }

    def drop_all(self, *, abrupt: bool) -> int:
        conns = list(self.connections.values())
        for conn in conns:
            conn.close(abrupt=abrupt)
        return len(conns)

    def arm_fault_clock(self) -> None:
        """Time the drops of a flapping schedule (faults.py) to its refusal windows' starts. Called
        when faults change and on every upgrade: drops only matter once a connection exists."""
        if self._fault_timer is not None:
            self._fault_timer.cancel()
            self._fault_timer = None
        at = self.faults.next_drop_at()
        if at is None:
            return
        loop = asyncio.get_running_loop()
        self._fault_timer = loop.call_later(max(0.0, at - self.faults.clock()), self._fault_tick)

    def _fault_tick(self) -> None:
        self._fault_timer = None
        drop = self.faults.due_drop()
        if drop is not None:
            dropped = self.drop_all(abrupt=drop.abrupt)
            log.info("flapping: refusing connections; dropped %d", dropped)
        self.arm_fault_clock()

    def _reject(self, conn: RealtimeConnection, frame: dict[str, Any]) -> None:
        """Answer a frame with an error frame, counted (fuzzing checks every reject is)."""
        self.stats.frames_rejected += 1
        conn.send(frame)

    # ----- WebSocket -------------------------------------------------------------------------------

    def upgrade(self, conn: RealtimeConnection, request: UpgradeRequest) -> None:
        """Answer a WebSocket upgrade: refused (faults, no events subprotocol), or accepted, and then
        authorized or told `connection_error` on its first frame."""
        remote = conn.remote
        if request.path.split("?", 1)[0] != REALTIME_PATH:
            self.stats.connections_refused += 1
            where = f"No WebSocket at {request.path}; use {REALTIME_PATH}"
            conn.deny(AppSyncError("NotFound", where, status=404))
            return
        if self._fault_timer is None:
            self.arm_fault_clock()
        if self.faults.refusing():
            self.stats.connections_refused += 1
            log.info("refused WebSocket from %s (fault injection)", remote)
            conn.deny(AppSyncError("ServiceUnavailable", "Connections refused", status=503))
            return
        stall_s = self.faults.stall_s()
        if stall_s > 0:
            # Never answer the upgrade: the client sees what a black-holed network gives it.
            self.stats.connections_refused += 1
            self.stats.connections_stalled += 1
            log.info("stalling WebSocket from %s for %.1f s (fault injection)", remote, stall_s)
            conn.stall(stall_s, AppSyncError("ServiceUnavailable", "Connections stalled", status=503))
            return
        offered = [p.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol")
                   for p in value.split(",")]  # fmt: skip
        if SUBPROTOCOL not in offered:
            self.stats.connections_refused += 1
            conn.deny(bad_request(f"The {SUBPROTOCOL} subprotocol is required"))
            return
        hosts = api_hosts(conn.sockname)
        # Plain HTTP headers on the upgrade, as some SDKs send them; their `host` is the Host header.
        auth: object = {k.lower(): v for k, v in request.headers.raw_items()}
        for proto in offered:
            if proto.startswith(AUTH_SUBPROTOCOL_PREFIX):
                auth = _decode_auth_subprotocol(proto)
                break
        if not conn.accept(request, SUBPROTOCOL, hosts):
            self.stats.connections_refused += 1
            return
        try:
            self.authorize(auth, expected_hosts=hosts, bodies=lambda: [b"{}"])
        except Unauthorized as exc:
            self.stats.connections_refused += 1
            self.stats.connections_unauthorized += 1
            log.warning("unauthorized WebSocket connection from %s: %s", remote, exc.reason)
            conn.refuse_after_first_frame(exc)
            return
        self.connections[conn.id] = conn
        self.stats.connections_total += 1
        log.info("connection %s from %s", conn.id, remote)

    def handle_frame(self, conn: RealtimeConnection, text: str) -> None:
        try:
            self._handle_frame(conn, text)
        except Exception:  # our bug: tell the client, keep the connection, as a service would
            log.exception("error handling a frame on %s", conn.id)
            self.stats.internal_errors += 1
            error = AppSyncError("InternalFailure", "An internal error occurred")
            conn.send({"type": "error", "errors": error.errors()})

    def _handle_frame(self, conn: RealtimeConnection, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:  # malformed JSON gets the same answer as valid JSON that is not an object
            frame = None
        if not isinstance(frame, dict):
            error = bad_request("Message must be a JSON object")
            self._reject(conn, {"type": "error", "errors": error.errors()})
            return
        kind = frame.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            error = AppSyncError("UnsupportedOperation", f"{kind} not supported through the realtime channel")
            reply: dict[str, Any] = {"type": "error", "errors": error.errors()}
            if isinstance(frame.get("id"), str):
                reply = {"type": "error", "id": frame["id"], "errors": error.errors()}
            self._reject(conn, reply)
            return
        handler(self, conn, frame)

    def _on_connection_init(self, conn: RealtimeConnection, frame: dict[str, Any]) -> None:
        timeout_ms = self.options.connection_timeout_ms
        # Top-level is what the service sends; one SDK reads payload.connectionTimeoutMs: send both.
        conn.send(
            {
                "type": "connection_ack",
                "connectionTimeoutMs": timeout_ms,
                "payload": {"connectionTimeoutMs": timeout_ms},
            }
        )
        conn.start_keepalive(self.options.ka_interval_s)
        conn.initialized()

    def _on_subscribe(self, conn: RealtimeConnection, frame: dict[str, Any]) -> None:
        sub_id = frame.get("id")
        if not isinstance(sub_id, str) or not sub_id:
            error = bad_request("Subscription id is required")
            self._reject(conn, {"type": "subscribe_error", "errors": error.errors()})
            return
        channel = frame.get("channel")
        try:
            auth_type = self.authorize(
                frame.get("authorization"),
                expected_hosts=conn.hosts,
                bodies=_signed_bodies({"channel": channel}),
            )
            if sub_id in conn.subscriptions:
                raise bad_request(f"Subscription id {sub_id} is already in use on this connection")
            pattern = _with_leading_slash(channel)
            try:
                segments = validate_channel(pattern, subscribe=True, namespaces=self.namespaces)  # type: ignore[arg-type]
            except InvalidChannel as exc:
                log.info("subscribe refused: %s", exc)
                raise bad_request(exc.message) from None
            allowed = self.subscribe_modes.get(segments[0])
            if allowed is not None and auth_type not in allowed:
                raise self._mode_refused(segments[0], auth_type, "subscribe")
            if len(conn.subscriptions) >= MAX_SUBSCRIPTIONS_PER_CONNECTION:
                limit = MAX_SUBSCRIPTIONS_PER_CONNECTION
                message = f"Maximum number of subscriptions per connection ({limit}) reached"  # (inferred)
                raise AppSyncError("MaxSubscriptionsReachedError", message)
        except AppSyncError as exc:
            if isinstance(exc, Unauthorized):
                log.warning("unauthorized subscribe on %s: %s", conn.id, exc.reason)
            self._reject(conn, {"type": "subscribe_error", "id": sub_id, "errors": exc.errors()})
            return
        conn.subscriptions[sub_id] = pattern  # type: ignore[assignment]
        self.stats.subscriptions_total += 1
        conn.send({"type": "subscribe_success", "id": sub_id})

    def _on_unsubscribe(self, conn: RealtimeConnection, frame: dict[str, Any]) -> None:
        sub_id = frame.get("id")
        if isinstance(sub_id, str) and conn.subscriptions.pop(sub_id, None) is not None:
            conn.send({"type": "unsubscribe_success", "id": sub_id})
            return
        error = bad_request(f"Subscription id {sub_id} not found")
        reply: dict[str, Any] = {"type": "unsubscribe_error", "errors": error.errors()}
        if isinstance(sub_id, str):
            reply = {"type": "unsubscribe_error", "id": sub_id, "errors": error.errors()}
        self._reject(conn, reply)

    def _on_publish(self, conn: RealtimeConnection, frame: dict[str, Any]) -> None:
        pub_id = frame.get("id")
        if not isinstance(pub_id, str) or not pub_id:
            error = bad_request("Publish id is required")
            self._reject(conn, {"type": "publish_error", "errors": error.errors()})
            return
        channel, events = frame.get("channel"), frame.get("events")
        # The other subscribers' data frames go out first: they are what the system waits on, and
        # the ack wakes the publisher, which would compete with them for a CPU. The publisher's own
        # data frames, if any, follow its ack.
        conn.hold()
        try:
            try:
                auth_type = self.authorize(
                    frame.get("authorization"),
                    expected_hosts=conn.hosts,
                    bodies=_signed_bodies({"channel": channel, "events": events}),
                )
                successful, failed = self.publish(_with_leading_slash(channel), events, auth_type=auth_type)
            except AppSyncError as exc:
                if isinstance(exc, Unauthorized):
                    log.warning("unauthorized publish on %s: %s", conn.id, exc.reason)
                self._reject(conn, {"type": "publish_error", "id": pub_id, "errors": exc.errors()})
                return
            conn.send_text(publish_success_frame(pub_id, successful, failed))
        finally:
            conn.release()

    _Handler = Callable[["AppSyncEmulator", RealtimeConnection, dict[str, Any]], None]
    _handlers: ClassVar[Mapping[str, _Handler]] = {
        "connection_init": _on_connection_init,
        "subscribe": _on_subscribe,
        "unsubscribe": _on_unsubscribe,
        "publish": _on_publish,
    }

    # ----- HTTP publish ----------------------------------------------------------------------------

    async def serve_http_publish(self, request: Request) -> Response:
        body = await request.body()
        try:
            hosts = api_hosts(request.scope.get("server") or ("127.0.0.1", 0))
            auth_type = self.authorize(dict(request.headers), expected_hosts=hosts, bodies=lambda: [body])
            try:
                payload = json.loads(body)
            except ValueError:
                raise bad_request("Request body is not valid JSON") from None
            if not isinstance(payload, dict):
                raise bad_request("Request body must be a JSON object")
            channel, events = payload.get("channel"), payload.get("events")
            successful, failed = self.publish(channel, events, auth_type=auth_type)
        except AppSyncError as exc:
            if isinstance(exc, Unauthorized):
                log.warning("unauthorized HTTP publish: %s", exc.reason)
            self.stats.http_rejected += 1
            return JSONResponse({"errors": exc.errors()}, status_code=exc.status)
        return JSONResponse({"failed": failed, "successful": successful})


def api_hosts(server: tuple[str, int]) -> frozenset[str]:
    """The emulator's "HTTP host" as auth objects must name it: `server`, the address and port the
    request reached.

    In AWS, `host` is the API's one HTTP host, even on the realtime connection. Here that host is this
    socket: `127.0.0.1:PORT`, or `localhost:PORT` for a client that dialled that name. The request's own
    Host header is not trusted for this, since the client writes it.
    """
    address, port = server[0], server[1]
    literal = f"[{address}]" if ":" in address else address
    return frozenset({f"{literal}:{port}".lower(), f"localhost:{port}"})


def _with_leading_slash(channel: object) -> object:
    if isinstance(channel, str) and channel and not channel.startswith("/"):
        return "/" + channel
    return channel


def build_router(emulator: AppSyncEmulator) -> APIRouter:
    """Routes of the emulator: HTTP publish and the `/_livelambda/` test endpoints. (The realtime
    WebSocket is not routed by FastAPI: uvicorn hands it to realtime.py.)"""
    router = APIRouter()

    @router.post("/event")
    async def http_publish(request: Request) -> Response:
        return await emulator.serve_http_publish(request)

    @router.options("/event")
    async def preflight() -> Response:
        # A CORS preflight, as a browser sends before its publish: no auth, nothing published. (The
        # dev server opens its kept-alive HTTP connections with one.)
        allow = {"access-control-allow-origin": "*", "access-control-allow-methods": "POST, OPTIONS",
                 "access-control-allow-headers": "*"}  # fmt: skip
        return Response(status_code=200, headers=allow)

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
        dropped = emulator.drop_all(abrupt=drop.abrupt) if drop else 0
        flapped = emulator.faults.due_drop()  # a flapping schedule's first refusal begins now
        if flapped is not None:
            dropped += emulator.drop_all(abrupt=flapped.abrupt)
        emulator.arm_fault_clock()
        if set(spec) - {"reset"}:  # tests reset around every test: keep the log readable
            log.info("faults %s -> %s (dropped %d connections)", spec, emulator.faults.snapshot(), dropped)
        return JSONResponse({"faults": emulator.faults.snapshot(), "dropped": dropped})

    return router
