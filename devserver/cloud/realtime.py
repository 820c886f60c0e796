"""The emulator's realtime WebSocket as an asyncio Protocol over websockets' sans-I/O `ServerProtocol`.

uvicorn parses the HTTP upgrade and hands the connection here (`Config(ws=realtime_protocol(...))`);
from then on every frame is handled inside `data_received` and every answer is one `transport.write`,
with no ASGI queue, task or lock in between: on the live path the emulator relays four frames an
invocation, and each of those steps used to cost a task switch.

Writes never block (the transport buffers them), so a slow subscriber cannot hold up a publisher; one
that stops reading altogether is dropped once `MAX_BUFFERED_BYTES` pile up for it. What the frames
mean (auth, publish, fan-out, faults) is the emulator's business: see appsync_emulator.py.

No connection stays open for nothing (devserver/servers/limits.py): one that has not sent `connection_init`
within `init_timeout_s` of its upgrade is closed with 1000 *(inferred: AWS documents no such timeout,
and PROTOCOL.md none; every client sends `connection_init` first)*, as is an unauthorized one that
sends no frame to be refused on. An initialized connection may stay idle as long as it likes: it gets
`ka` frames, as a subscriber waiting for events does.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Protocol

from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from devserver.cloud.faults import Faults
from devserver.servers.limits import ServerLimits
from stub_runtime.appsync.ws_messages import DATA_OPCODES, MessageAssembler
from stub_runtime.wire import compact_json, data_frame


class Refusal(Protocol):
    """An error the service answers a client with (the emulator's AppSyncError): its HTTP status
    before the upgrade, its `errors` list after."""

    status: int

    def errors(self) -> list[dict[str, str]]: ...


class _Counts(Protocol):
    events_delivered: int


class RealtimeService(Protocol):
    """What a connection asks of the service behind it: the emulator implements it, and this module
    needs nothing else of it (so the emulator may import this module, not the other way round)."""

    connections: dict[str, RealtimeConnection]
    faults: Faults
    stats: _Counts

    def upgrade(self, conn: RealtimeConnection, request: Request) -> None: ...

    def handle_frame(self, conn: RealtimeConnection, text: str) -> None: ...

log = logging.getLogger("livelambda.cloud.appsync")
_protocol_log = logging.getLogger("livelambda.cloud.websockets")  # "connection open" for each client:
_protocol_log.setLevel(logging.WARNING)  # the emulator logs its own line

MAX_FRAME_BYTES = 16 * 1024 * 1024  # one WebSocket message (uvicorn's default, as before)
MAX_BUFFERED_BYTES = 64 * 1024 * 1024  # unsent bytes for one client before it is dropped
CLOSE_TIMEOUT_S = 2.0  # a client that does not answer our close frame loses the TCP connection


def realtime_protocol(
    emulator: RealtimeService, limits: ServerLimits | None = None
) -> Callable[..., RealtimeConnection]:
    """What uvicorn's `ws` setting takes: it calls this for each upgraded connection. `limits`: default,
    from the environment."""
    init_timeout_s = (limits or ServerLimits.from_env()).init_timeout_s

    def make(*, server_state: Any, **_: Any) -> RealtimeConnection:
        return RealtimeConnection(emulator, server_state.connections, init_timeout_s=init_timeout_s)

    return make


class RealtimeConnection(asyncio.Protocol):
    """One WebSocket: the handshake, then AppSync frames in, frames out. States: "handshake" (until
    the emulator accepts or denies the upgrade), "open", "refusing" (accepted but unauthorized: the
    first frame gets `connection_error`), "closing", "closed"."""

    def __init__(
        self, emulator: RealtimeService, server_connections: set[Any], *, init_timeout_s: float = 10.0
    ) -> None:
        self.emulator = emulator
        self.init_timeout_s = init_timeout_s  # for `connection_init` (or any frame, if unauthorized)
        self._server_connections = server_connections  # uvicorn closes these on shutdown
        self.ws = ServerProtocol(max_size=MAX_FRAME_BYTES, logger=_protocol_log)
        self.transport: asyncio.Transport | None = None
        self.state = "handshake"
        self.id = uuid.uuid4().hex
        self.connected_at = time.time()
        self.remote = "?"
        self.hosts: frozenset[str] = frozenset()  # what `host` in this connection's auth objects may say
        self.subscriptions: dict[str, str] = {}  # id -> channel pattern
        self._messages = MessageAssembler()
        self._refusal: Refusal | None = None
        self._delayed: deque[tuple[float, str, str]] = deque()  # (not before, subscription id, frame)
        self._held: list[tuple[float, str, str]] | None = None
        self._timers: dict[str, asyncio.Handle] = {}

    # ----- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._server_connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.remote = f"{peer[0]}:{peer[1]}"

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        self._handle(self.ws.events_received())

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._handle(self.ws.events_received())
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = self.state in ("open", "closing")
        self.state = "closed"
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._delayed.clear()
        self._server_connections.discard(self)
        if self.emulator.connections.pop(self.id, None) is not None or was_open:
            log.info("connection %s closed", self.id)

    def shutdown(self) -> None:
        """uvicorn is stopping: tell the client the service restarts (1012), as uvicorn does."""
        if self.state in ("open", "refusing"):
            self._send_close(1012)
        elif self.transport is not None:
            self.transport.close()

    # ----- the handshake (decided by the emulator) -------------------------------------------------

    @property
    def sockname(self) -> tuple[str, int]:
        name = self.transport.get_extra_info("sockname") if self.transport else None
        return (name[0], name[1]) if isinstance(name, tuple) else ("127.0.0.1", 0)

    def accept(self, request: Request, subprotocol: str, hosts: frozenset[str]) -> bool:
        """Complete the upgrade with `subprotocol`; False if the request was no valid handshake."""
        chosen = Subprotocol(subprotocol)
        self.ws.select_subprotocol = lambda _offered: chosen  # type: ignore[method-assign, assignment]
        response = self.ws.accept(request)
        self.ws.send_response(response)
        self._flush()
        if response.status_code != 101:
            self.state = "closed"
            return False
        self.hosts = hosts
        self.state = "open"
        self._later("init", self.init_timeout_s, self._not_initialized)
        return True

    def initialized(self) -> None:
        """`connection_init` arrived: the connection may now idle as long as it likes."""
        self._cancel("init")

    def _not_initialized(self) -> None:
        log.info("connection %s (%s) sent no connection_init within %g s: closed", self.id, self.remote,
                 self.init_timeout_s)  # fmt: skip
        self.close(abrupt=False)  # 1000, as the service closes even on failure

    def refuse_after_first_frame(self, error: Refusal) -> None:
        """Accepted, but unauthorized: the first frame is answered `connection_error`, then 1000."""
        self.state = "refusing"
        self._refusal = error
        self._cancel("init")  # this deadline replaces it
        self._later("refuse", self.init_timeout_s, lambda: self._send_close(1000))

    def deny(self, error: Refusal) -> None:
        """Refuse the upgrade with an HTTP status and a JSON body, as a load balancer would."""
        body = compact_json({"errors": error.errors()}).encode()
        phrase = HTTPStatus(error.status).phrase if error.status in HTTPStatus._value2member_map_ else ""
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                           ("Connection", "close")])  # fmt: skip
        self.ws.send_response(Response(error.status, phrase, headers, body))
        self.state = "closed"
        self._flush()

    def stall(self, seconds: float, then: Refusal) -> None:
        """Leave the upgrade unanswered for `seconds` (a black-holed network), then deny it."""
        self._later("stall", seconds, lambda: self.deny(then))

    # ----- frames in -------------------------------------------------------------------------------

    def _handle(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, Request):
                self.emulator.upgrade(self, event)
            elif isinstance(event, Frame):
                if event.opcode in DATA_OPCODES:
                    message = self._messages.feed(event)
                    if message is not None:
                        self._on_message(message.data)
                elif event.opcode is Opcode.CLOSE and self.state != "closed":
                    self.state = "closing"
        self._flush()

    def _on_message(self, message: bytes | bytearray | memoryview) -> None:
        try:
            text = str(message, "utf-8")
        except UnicodeDecodeError:
            text = ""
        if self.state == "open":
            self.emulator.handle_frame(self, text)
        elif self.state == "refusing" and self._refusal is not None:
            self.send({"type": "connection_error", "errors": self._refusal.errors()})
            self._refusal = None
            self._send_close(1000)  # the service closes with 1000 even on failure

    # ----- frames out ------------------------------------------------------------------------------

    def send(self, frame: dict[str, Any]) -> bool:
        return self.send_text(compact_json(frame))

    def send_text(self, text: str) -> bool:
        """Write one text frame now; False if the connection can no longer take it."""
        if self.state not in ("open", "refusing") or self.transport is None:
            return False
        try:
            self.ws.send_text(text.encode())
        except InvalidState:  # the client's close frame arrived in this very read
            return False
        self._flush()
        if self.transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            log.warning("connection %s (%s) stopped reading: %d bytes unsent; dropped", self.id,
                        self.remote, self.transport.get_write_buffer_size())  # fmt: skip
            self.close(abrupt=True)
            return False
        return True

    def enqueue_data(self, subscription_id: str, event: str, delay_s: float) -> None:
        """Deliver a `data` frame for one of this connection's subscriptions, after `delay_s`."""
        text = data_frame(subscription_id, event)
        item = (time.monotonic() + delay_s, subscription_id, text)
        if self._held is not None:
            self._held.append(item)
        elif delay_s <= 0 and not self._delayed:
            self._deliver(subscription_id, text)
        else:
            self._delayed.append(item)
            if "delayed" not in self._timers:
                self._later("delayed", max(0.0, self._delayed[0][0] - time.monotonic()), self._drain)

    def hold(self) -> None:
        """Keep this connection's data frames back until `release()` (a publisher's own, after its ack)."""
        self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        for not_before, subscription_id, text in held:
            if not self._delayed and not_before <= time.monotonic():
                self._deliver(subscription_id, text)
            else:
                self._delayed.append((not_before, subscription_id, text))
        if self._delayed and "delayed" not in self._timers:
            self._later("delayed", max(0.0, self._delayed[0][0] - time.monotonic()), self._drain)

    def _drain(self) -> None:
        while self._delayed and self._delayed[0][0] <= time.monotonic():
            _, subscription_id, text = self._delayed.popleft()
            if not self._deliver(subscription_id, text):
                self._delayed.clear()
                return
        if self._delayed:
            self._later("delayed", self._delayed[0][0] - time.monotonic(), self._drain)

    def _deliver(self, subscription_id: str, text: str) -> bool:
        if subscription_id not in self.subscriptions:
            return True  # unsubscribed while the frame waited: the client no longer expects it
        faults = self.emulator.faults
        if faults.before_data_frame():
            self.close(abrupt=faults.drop_after_abrupt)
            return False
        if not self.send_text(text):
            return False
        self.emulator.stats.events_delivered += 1
        if faults.after_data_frame():
            self.close(abrupt=faults.drop_after_abrupt)
            return False
        return True

    def start_keepalive(self, interval_s: float) -> None:
        """A `ka` frame now and every `interval_s` (once per connection)."""
        if "ka" in self._timers:
            return

        def tick() -> None:
            if self.send({"type": "ka"}):
                self._later("ka", interval_s, tick)

        self._timers["ka"] = asyncio.get_running_loop().call_soon(tick)

    # ----- closing ---------------------------------------------------------------------------------

    def close(self, *, abrupt: bool) -> None:
        """Close with 1000, or drop the TCP connection without a close frame (the client sees 1006)."""
        self.emulator.connections.pop(self.id, None)  # stats read right after a drop no longer count it
        if abrupt:
            self.state = "closed"
            if self.transport is not None:
                self.transport.abort()
            return
        self._send_close(1000)

    def _send_close(self, code: int) -> None:
        if self.state in ("closing", "closed") or self.transport is None:
            return
        self.state = "closing"
        try:
            self.ws.send_close(code)
        except InvalidState:
            pass
        self._flush()
        transport = self.transport
        self._later("close", CLOSE_TIMEOUT_S, transport.abort)

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            elif not transport.is_closing():
                # Done sending (close handshake over, a denied upgrade, or a failure such as a message
                # over MAX_FRAME_BYTES): half-close, and keep reading (and discarding) until the client
                # closes too; closing outright with its data unread would reset the connection and
                # lose the close frame. A client that never closes is dropped after CLOSE_TIMEOUT_S.
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()
                if "close" not in self._timers:
                    self._later("close", CLOSE_TIMEOUT_S, transport.abort)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _later(self, name: str, delay_s: float, callback: Callable[[], Any]) -> None:
        def run() -> None:
            self._timers.pop(name, None)
            callback()

        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        self._timers[name] = asyncio.get_running_loop().call_later(delay_s, run)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "remote": self.remote,
            "connected_at": self.connected_at,
            "subscriptions": [{"id": k, "channel": v} for k, v in self.subscriptions.items()],
        }
