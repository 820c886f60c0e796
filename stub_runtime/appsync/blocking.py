"""A blocking AppSync Events connection, for the stub in Lambda: one socket, no event loop, no thread.

A sandbox runs one invocation at a time and its runtime waits for the handler to return, so the stub
needs no concurrency: it writes a publish, then reads frames until the answer it waits for arrives,
every read bounded by a deadline. websockets' sans-I/O `ClientProtocol` speaks WebSocket and `frames`
speaks AppSync; this module only moves bytes between them and a socket. (The dev server, which does
many things at once, uses the asyncio client in `client.py`.)

    conn = BlockingConnection(http_url, realtime_url, ApiKeyAuth(key, host))
    conn.connect(deadline)                          # deadlines on the connection's clock (monotonic)
    sub_id = conn.subscribe("/livelambda/s1/res/x", deadline)
    conn.publish("/livelambda/s1/req", ['{"a":1}'], deadline)
    data = conn.next_data(deadline)                 # a Data frame, or None at the deadline

`OnDemandConnection` dials it under a `ReconnectPolicy` in on_demand mode: only for an invocation,
bounded by its deadline, refusals retried backed off, a dial that got no answer not repeated, and the
circuit breaker failing fast while the endpoint stays a black hole.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from stub_runtime.appsync import frames as f
from stub_runtime.appsync.auth import Auth
from stub_runtime.appsync.errors import (
    DIAL_ERRORS,
    ClientClosed,
    ConnectGiveUp,
    ConnectionLost,
    OperationTimeout,
    closed_before_ack,
    failure_kind,
    give_up_error,
    handshake_failed,
    no_answer,
    retryable,
    unreachable,
    upgrade_refused,
)
from stub_runtime.appsync.publishing import (
    HttpPublisher,
    PublishResult,
    check_channel,
    default_tls_context,
    merge,
    merge_reply,
    normalise_http_url,
    plan_publish,
    publish_frame,
    raise_reply,
    sorted_result,
)
from stub_runtime.errors import LocalProtocolError, RemoteProtocolError
from stub_runtime.reconnect import Dial, GiveUp, Ready, ReconnectPolicy, Wait

log = logging.getLogger("livelambda.appsync")

# Reads go into one buffer per connection: recv() would allocate 256 KiB each time, and glibc may serve
# that with mmap + mremap + munmap (three system calls a read) depending on the process's history.
_READ_SIZE = 256 * 1024
_DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
_MAX_MESSAGE = 4 * 1024 * 1024


class BlockingConnection:
    """One AppSync Events WebSocket, used from one thread. Not reusable: after `close()` or a loss,
    make a new one. Arguments as `AppSyncEventsClient`'s, `ssl_context` for a `wss` URL (and an
    `https` one), and `http_publisher`: the kept-alive HTTP connection to publish over (IAM), which a
    sandbox keeps across its connections (default: one of this connection's own)."""

    def __init__(
        self,
        http_url: str,
        realtime_url: str,
        auth: Auth,
        *,
        open_timeout_s: float = 10.0,
        ack_timeout_s: float = 10.0,
        http_timeout_s: float = 10.0,
        max_event_bytes: int | None = f.MAX_EVENT_BYTES,
        clock: Callable[[], float] = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
        http_publisher: HttpPublisher | None = None,
    ) -> None:
        self.http_url = normalise_http_url(http_url)
        self.ssl_context = ssl_context  # for wss: None verifies against the system's CAs
        self._owns_publisher = http_publisher is None
        self.http_publisher = http_publisher or HttpPublisher(self.http_url, ssl_context=ssl_context)
        self.realtime_url = realtime_url
        self.auth = auth
        self.open_timeout_s = open_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.http_timeout_s = http_timeout_s
        self.max_event_bytes = max_event_bytes
        self.clock = clock
        self.connection_timeout_ms: int | None = None
        self.connected_at: float | None = None
        self.last_frame_at: float | None = None
        self.last_error: f.Error | None = None
        self.close_reason: BaseException | None = None
        self.stats = {"frames": 0, "keepalives": 0, "malformed": 0, "unroutable": 0, "broadcast_errors": 0}
        self.state = "new"  # new -> connecting -> open -> closed
        self._sock: socket.socket | None = None
        self._ws: ClientProtocol | None = None
        self._subs: set[str] = set()
        self._answers: dict[str, f.ServerFrame] = {}  # replies by frame id, until claimed
        self._data: deque[f.Data] = deque()
        self._fragments: list[Frame] = []
        self._read_buffer = memoryview(bytearray(_READ_SIZE))
        self._early: list[Any] = []  # events received with the upgrade's answer

    def __repr__(self) -> str:
        return f"<BlockingConnection {self.realtime_url} {self.state}>"

    # ---------------------------------------------------------------------------- state
    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def timeout_s(self) -> float:
        """Silence after which the connection is dead (connectionTimeoutMs)."""
        return (self.connection_timeout_ms or f.DEFAULT_CONNECTION_TIMEOUT_MS) / 1000

    def is_stale(self, now: float | None = None) -> bool:
        """True when the socket must not be trusted: not open, or no frame within connectionTimeoutMs.
        A thawed sandbox calls `poll()` first, so that frames that arrived while it was frozen count."""
        if self.state != "open" or self.last_frame_at is None:
            return True
        now = self.clock() if now is None else now
        return now - self.last_frame_at > self.timeout_s

    # ---------------------------------------------------------------------------- connect
    def connect(self, deadline: float) -> None:
        """Open the WebSocket, send connection_init, wait for connection_ack, all before `deadline`
        (and within open_timeout_s + ack_timeout_s). Raises ConnectFailed, or AppSyncServiceError for a
        `connection_error` (e.g. UnauthorizedException)."""
        if self.state != "new":
            raise ClientClosed(f"connect() on a connection that is {self.state}: make a new one")
        self.state = "connecting"
        try:
            self._open(min(deadline, self.clock() + self.open_timeout_s))
            self._send_text(f.ConnectionInit().encode(), deadline)
            ack_by = min(deadline, self.clock() + self.ack_timeout_s)
            ack = None
            while ack is None:
                frame = self._next_frame(ack_by)
                if frame is None:
                    raise no_answer(self.realtime_url, self.ack_timeout_s)
                ack = f.acked(frame, self.realtime_url)
        except ConnectionLost:
            self.abort()
            raise closed_before_ack(self.realtime_url, self._close_code()) from None
        except BaseException:
            self.abort()
            raise
        self.connection_timeout_ms = ack.connection_timeout_ms
        self.connected_at = self.last_frame_at = self.clock()
        self.state = "open"

    def _open(self, deadline: float) -> None:
        url = self.realtime_url
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        budget = max(0.001, deadline - self.clock())
        try:
            sock = socket.create_connection((host, port), timeout=budget)
        except TimeoutError:
            raise no_answer(url, budget) from None
        except OSError as exc:
            raise unreachable(url, exc) from exc
        self._sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if secure:
            try:
                sock.settimeout(max(0.001, deadline - self.clock()))
                context = self.ssl_context or default_tls_context()
                self._sock = context.wrap_socket(sock, server_hostname=host)
            except TimeoutError:
                raise no_answer(url, budget) from None
            except (ssl.SSLError, ssl.CertificateError) as exc:
                raise handshake_failed(url, exc) from exc
            except OSError as exc:
                raise unreachable(url, exc) from exc
        ws = ClientProtocol(
            parse_uri(url),
            subprotocols=f.subprotocols(self.auth.headers(f.connect_body())),  # type: ignore[arg-type]
            max_size=_MAX_MESSAGE,
        )
        self._ws = ws
        ws.send_request(ws.connect())
        self._flush(deadline)
        response = None
        while response is None:
            events = self._receive(deadline, what="the WebSocket upgrade")
            if events is None:
                raise no_answer(url, budget)
            response = next((e for e in events if isinstance(e, Response)), None)
            # Frames may come in the same read as the upgrade's answer: read them next.
            self._early = [e for e in events if not isinstance(e, Response)]
        if isinstance(ws.handshake_exc, InvalidStatus):
            raise upgrade_refused(url, ws.handshake_exc.response.status_code)
        if isinstance(ws.handshake_exc, InvalidHandshake):
            raise handshake_failed(url, ws.handshake_exc)
        if ws.subprotocol != f.SUBPROTOCOL:
            raise RemoteProtocolError(
                f"server at {url} selected subprotocol {ws.subprotocol!r}, not {f.SUBPROTOCOL!r}: "
                "is this an AppSync Events endpoint?"
            )

    # ---------------------------------------------------------------------------- operations
    def subscribe(self, channel: str, deadline: float) -> str:
        """Subscribe and wait for subscribe_success; returns the subscription id."""
        check_channel(channel, subscribe=True)
        self._require_open()
        frame = f.Subscribe(channel, self.auth.headers(f.subscribe_body(channel)))
        self._subs.add(frame.id)
        what = f"the subscription to {channel}"
        try:
            self._send_text(frame.encode(), deadline)
            raise_reply(self._answer(frame.id, deadline, what), what)
        except BaseException:
            self._subs.discard(frame.id)
            raise
        return frame.id

    def publish(self, channel: str, events: Sequence[str], deadline: float) -> PublishResult:
        """Publish JSON-encoded events, 5 a request (over HTTP with an auth that says so: IAM); every
        request is written before the first answer is awaited. As `AppSyncEventsClient.publish`."""
        batches, result = plan_publish(channel, events, self.max_event_bytes)
        what = f"a publish to {channel}"
        if self.auth.publish_over_http:
            for batch in batches:
                timeout = min(self.http_timeout_s, max(0.001, deadline - self.clock()))
                payload = [events[i] for i in batch]
                successful, failed = self.http_publisher.publish(self.auth, channel, payload, timeout)
                merge(result, batch, successful, failed)
            return sorted_result(result)
        self._require_open()
        sent = []
        for batch in batches:
            frame = publish_frame(self.auth, channel, [events[i] for i in batch])
            self._send_text(frame.encode(), deadline)
            sent.append((batch, frame.id))
        for batch, frame_id in sent:
            merge_reply(result, batch, self._answer(frame_id, deadline, what), what)
        return sorted_result(result)

    def next_data(self, deadline: float) -> f.Data | None:
        """The next `data` frame of a subscription; None when `deadline` passes first. Raises
        ConnectionLost when the connection dies."""
        while not self._data:
            self._require_open()
            if self._read(deadline) is None:
                return None
        return self._data.popleft()

    def poll(self) -> None:
        """Take in what already arrived (a thawed sandbox: keep-alives sent while it was frozen, or the
        close that makes it reconnect), without waiting."""
        if self.state == "open":
            try:
                while self._read(self.clock(), blocking=False) is not None:
                    pass
            except ConnectionLost:
                pass

    def close(self) -> None:
        """Close with a close frame (best effort, without waiting for the answer)."""
        ws, sock = self._ws, self._sock
        if self.state == "open" and ws is not None and sock is not None:
            try:
                ws.send_close(1000)
                sock.settimeout(0.5)
                for data in ws.data_to_send():
                    sock.sendall(data)
            except OSError:
                pass
        self.abort()

    def abort(self, reason: BaseException | None = None) -> None:
        """Drop the connection at once (a dead or stale socket)."""
        if reason is not None and self.close_reason is None:
            self.close_reason = reason
        self.state = "closed"
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._owns_publisher:
            self.http_publisher.close()

    # ---------------------------------------------------------------------------- reading
    def _answer(self, frame_id: str, deadline: float, what: str) -> f.ServerFrame:
        until = min(deadline, self.clock() + self.ack_timeout_s)
        while frame_id not in self._answers:
            self._require_open()
            if self._read(until) is None:
                raise OperationTimeout(f"AppSync did not answer {what} in time")
        return self._answers.pop(frame_id)

    def _next_frame(self, deadline: float) -> f.ServerFrame | None:
        """While connecting: the next frame as it comes (not dispatched)."""
        while True:
            if self._answers:
                return self._answers.pop(next(iter(self._answers)))
            frames = self._read(deadline, dispatch=False)
            if frames is None:
                return None
            if frames:
                return frames[0]

    def _read(self, deadline: float, *, blocking: bool = True, dispatch: bool = True) -> list[Any] | None:
        """One read from the socket; the AppSync frames it completed (dispatched unless told not to).
        None when nothing came by `deadline`."""
        events, self._early = self._early or self._receive(deadline, what="AppSync", blocking=blocking), []
        if events is None:
            return None
        frames = []
        for event in events:
            if not isinstance(event, Frame):
                continue
            if event.opcode in _DATA_OPCODES:
                self._fragments.append(event)
                if not event.fin:
                    continue
                first, message = self._fragments[0], b"".join(e.data for e in self._fragments)
                self._fragments = []
                self.last_frame_at = self.clock()
                self.stats["frames"] += 1
                try:
                    if first.opcode is not Opcode.TEXT:
                        raise RemoteProtocolError("a binary frame; AppSync Events frames are JSON text")
                    frames.append(f.parse_server_frame(message.decode()))
                except (RemoteProtocolError, UnicodeDecodeError):
                    self.stats["malformed"] += 1
            elif event.opcode is Opcode.CLOSE:
                self._lose(f"AppSync closed the connection (code {self._close_code()}); reconnect")
        if dispatch:
            for frame in frames:
                self._dispatch(frame)
        elif len(frames) > 1:  # connecting: keep the rest for the next call
            for frame in frames[1:]:
                self._dispatch(frame)
        if self.state == "closed" and not frames:
            raise self.close_reason or ConnectionLost("the connection to AppSync ended; reconnect")
        return frames

    def _receive(self, deadline: float, *, what: str, blocking: bool = True) -> list[Any] | None:
        sock, ws = self._sock, self._ws
        if sock is None or ws is None:
            raise self.close_reason or ConnectionLost(f"the connection to {what} is gone; reconnect")
        if blocking:
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None
            sock.settimeout(remaining)
        else:
            sock.settimeout(0.0)
        try:
            size = sock.recv_into(self._read_buffer)
        except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
            return None
        except OSError as exc:
            self._lose(f"the connection to AppSync broke ({exc}); reconnect")
            raise self.close_reason from None  # type: ignore[misc]
        if size:
            ws.receive_data(self._read_buffer[:size])  # type: ignore[arg-type]  # (copied into its buffer)
        else:
            ws.receive_eof()
        events = ws.events_received()
        try:
            self._flush(self.clock() + 1.0)  # pongs and the answer to a close
        except ConnectionLost:
            pass
        if not size and not events:
            self._lose(f"AppSync closed the connection (code {self._close_code()}); reconnect")
            raise self.close_reason from None  # type: ignore[misc]
        return events

    def _dispatch(self, frame: f.ServerFrame) -> None:
        if isinstance(frame, f.Data):
            if frame.id in self._subs:
                self._data.append(frame)
            else:
                self.stats["unroutable"] += 1
        elif isinstance(frame, f.KeepAlive):
            self.stats["keepalives"] += 1
        elif isinstance(frame, f.BroadcastError):
            self.stats["broadcast_errors"] += 1
        elif isinstance(frame, f.Error) and frame.id is None:
            self.last_error = frame
        elif isinstance(frame, (f.ConnectionAck, f.ConnectionError)) and self.state == "open":
            self.stats["unroutable"] += 1
        else:
            self._answers[getattr(frame, "id", None) or ""] = frame

    # ---------------------------------------------------------------------------- writing
    def _send_text(self, text: str, deadline: float) -> None:
        ws = self._ws
        if ws is None:
            raise ClientClosed("the connection is not open")
        ws.send_text(text.encode())
        self._flush(deadline)

    def _flush(self, deadline: float) -> None:
        sock, ws = self._sock, self._ws
        if sock is None or ws is None:
            raise self.close_reason or ConnectionLost("the connection to AppSync is gone; reconnect")
        for data in ws.data_to_send():
            if not data:
                continue
            try:
                sock.settimeout(max(0.001, deadline - self.clock()))
                sock.sendall(data)
            except TimeoutError:
                self._lose("AppSync stopped reading what this connection sends; reconnect")
                raise self.close_reason from None  # type: ignore[misc]
            except OSError as exc:
                self._lose(f"the connection to AppSync broke while sending ({exc}); reconnect")
                raise self.close_reason from None  # type: ignore[misc]

    # ---------------------------------------------------------------------------- helpers
    def _require_open(self) -> None:
        if self.state != "open":
            if isinstance(self.close_reason, ConnectionLost):
                raise ConnectionLost(f"{self.close_reason} (the connection is already gone)")
            raise ClientClosed(f"the connection is {self.state}: connect() first or make a new one")

    def _lose(self, message: str) -> None:
        self.abort(ConnectionLost(message))

    def _close_code(self) -> int:
        """The close code received, 1006 when the TCP connection ended without a close frame."""
        received = self._ws.close_rcvd if self._ws is not None else None
        return received.code if received is not None else 1006


class OnDemandConnection:
    """At most one BlockingConnection at a time, dialled only for a demand (an invocation) and only as
    the policy (on_demand mode) allows: refusals retried backed off within the demand's deadline, a
    dial that got no answer ending the demand, the circuit breaker failing demands fast while the
    endpoint stays a black hole.

        link = OnDemandConnection(make_connection, ReconnectPolicy(PolicyConfig(mode="on_demand")))
        conn = link.ensure_connected(deadline)   # ConnectGiveUp / CircuitOpen when it cannot
        ...
        link.end_demand()                         # when the invocation is over
    """

    def __init__(
        self,
        factory: Callable[[], BlockingConnection],
        policy: ReconnectPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        if policy.config.mode != "on_demand":
            raise LocalProtocolError("OnDemandConnection needs a ReconnectPolicy in 'on_demand' mode")
        self._factory = factory
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self.connection: BlockingConnection | None = None
        self.last_error: BaseException | None = None
        self.endpoint: str | None = None
        # this demand's dials and when the first began: what its give-up reports
        self._demand_dials = 0
        self._demand_since: float | None = None

    def ensure_connected(self, deadline: float) -> BlockingConnection:
        """An open, fresh connection, dialled if needed within `deadline` (this object's clock). Raises
        ConnectGiveUp / CircuitOpen, or the dial's own error when retrying cannot fix it
        (AppSyncServiceError, a 4xx rejection)."""
        self._drop_if_dead()
        while True:
            now = self._clock()
            action = self.policy.next_action(now, deadline)
            if isinstance(action, Ready):
                assert self.connection is not None
                return self.connection
            if isinstance(action, GiveUp):
                raise self._give_up(action, now)
            if isinstance(action, Wait):
                self._sleep(max(0.0, action.until - now))
                continue
            assert isinstance(action, Dial)
            if not self._dial(deadline) and self.last_error is not None and not retryable(self.last_error):
                raise self.last_error

    def end_demand(self) -> None:
        """The invocation is over (resets the per-invocation attempt count)."""
        self._demand_dials = 0
        self._demand_since = None
        self.policy.end_demand(self._clock())

    def lost(self) -> None:
        """The current connection died (a send or read raised ConnectionLost): tell the policy once."""
        conn, self.connection = self.connection, None
        if conn is None:
            return
        conn.abort()
        if conn.close_reason is not None:
            self.last_error = conn.close_reason
        self.policy.connection_lost(self._clock())

    def close(self) -> None:
        conn, self.connection = self.connection, None
        if conn is not None:
            conn.close()

    def _drop_if_dead(self) -> None:
        """A thawed sandbox: trust the kept socket only if a frame arrived within connectionTimeoutMs."""
        conn = self.connection
        if conn is None:
            return
        conn.poll()
        if conn.is_open and conn.is_stale(self._clock()):
            conn.abort(ConnectionLost(f"no frame from AppSync for over {conn.timeout_s:g}s: stale"))
        if not conn.is_open:
            self.lost()

    def _dial(self, deadline: float) -> bool:
        conn = self._factory()
        self.endpoint = conn.realtime_url
        started = self._clock()
        self.policy.dial_started(started)
        self._demand_dials += 1
        if self._demand_since is None:
            self._demand_since = started
        budget = conn.open_timeout_s + conn.ack_timeout_s
        try:
            conn.connect(min(deadline, self._clock() + budget))
        except DIAL_ERRORS as exc:
            self.policy.dial_failed(self._clock(), failure_kind(exc))
            self.last_error = exc
            log.info("AppSync dial failed: %s", exc)
            return False
        except BaseException:
            conn.abort()
            self.policy.dial_failed(self._clock())
            raise
        self.policy.dial_succeeded(self._clock())
        self.connection = conn
        return True

    def _give_up(self, action: GiveUp, now: float) -> ConnectGiveUp:
        since = self._demand_since
        return give_up_error(
            action,
            now,
            attempts=self.policy.stats.attempts,
            endpoint=self.endpoint,
            last_error=self.last_error,
            dials=self._demand_dials,
            waited_s=0.0 if since is None else now - since,
        )
