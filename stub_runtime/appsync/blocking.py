"""A blocking AppSync Events connection, for the stub in Lambda: one socket, no event loop, no thread.

A sandbox runs one invocation at a time and its runtime waits for the handler to return, so the stub
needs no concurrency: it writes a publish, then reads frames until the answer it waits for arrives,
every read bounded by a deadline. websockets' sans-I/O `ClientProtocol` speaks WebSocket and
`session.AppSyncSession` speaks AppSync (the dev server's asyncio client in `client.py` drives the
same session); this module only moves bytes between them and a socket, and reads when a deadline is
due. Deadlines are on the connection's clock (monotonic):

    conn = BlockingConnection(http_url, realtime_url, ApiKeyAuth(key, host))
    conn.connect(deadline)
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
from websockets.exceptions import InvalidHandshake, InvalidState, InvalidStatus
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
    default_tls_context,
    merge,
    normalise_http_url,
    plan_publish,
    sorted_result,
)
from stub_runtime.appsync.session import CONNECTING, OPEN, Answered, AppSyncSession, Closed, Failed, State
from stub_runtime.appsync.ws_messages import DATA_OPCODES, MessageAssembler, text_of
from stub_runtime.errors import LocalProtocolError, RemoteProtocolError
from stub_runtime.reconnect import Dial, GiveUp, Ready, ReconnectPolicy, Wait

log = logging.getLogger("livelambda.appsync")

# Reads go into one buffer per connection: recv() would allocate 256 KiB each time, and glibc may serve
# that with mmap + mremap + munmap (three system calls a read) depending on the process's history.
_READ_SIZE = 256 * 1024
_MAX_MESSAGE = 4 * 1024 * 1024
_EOF = object()  # ends a read's events when the server closed the TCP connection


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
        silence_timeout_s: float | None = None,
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
        self.session = AppSyncSession(
            realtime_url,
            auth,
            ack_timeout_s=ack_timeout_s,
            silence_timeout_s=silence_timeout_s,
            max_event_bytes=max_event_bytes,
        )
        self._dialled = False
        self._sock: socket.socket | None = None
        self._ws: ClientProtocol | None = None
        self._messages = MessageAssembler()
        self._data: deque[f.Data] = deque()
        self._ended: dict[str, Answered | Failed] = {}  # requests' ends, until claimed
        self._read_buffer = memoryview(bytearray(_READ_SIZE))
        self._early: list[Any] = []  # events received with the upgrade's answer

    def __repr__(self) -> str:
        return f"<BlockingConnection {self.realtime_url} {self.state.name}>"

    # ---------------------------------------------------------------------------- state: the session's
    # (its stats, timeouts and last frames are read on `session`)
    @property
    def state(self) -> State:
        return self.session.state

    @property
    def is_open(self) -> bool:
        return self.session.state is OPEN

    @property
    def close_reason(self) -> BaseException | None:
        """Why the connection ended (None after `close()`, or while open)."""
        return self.session.close_reason

    def is_stale(self, now: float | None = None) -> bool:
        """True when the socket must not be trusted: not open, or silent for `session.timeout_s`. A
        thawed sandbox calls `poll()` first, so that frames that arrived while it was frozen count."""
        return self.session.is_stale(self.clock() if now is None else now)

    # ---------------------------------------------------------------------------- connect
    def connect(self, deadline: float) -> None:
        """Open the WebSocket, send connection_init, wait for connection_ack, all before `deadline`
        (and within open_timeout_s + ack_timeout_s). Raises ConnectFailed, or AppSyncServiceError for a
        `connection_error` (e.g. UnauthorizedException)."""
        session = self.session
        if self._dialled or session.state is not CONNECTING:
            raise ClientClosed(f"connect() on a connection that is {self.state.name.lower()}: make a new one")
        self._dialled = True
        try:
            self._open(min(deadline, self.clock() + self.open_timeout_s))
            session.connect(self.clock(), deadline)
            early, self._early = self._early, []
            self._feed(early)  # frames that came with the upgrade's answer
            self._flush(deadline)
            while session.state is CONNECTING:
                self._step(session.next_deadline())
        except BaseException as exc:
            self.abort(exc if isinstance(exc, Exception) else None)
            raise
        if session.state is not OPEN:
            raise self._ended_by()

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
        self._write(ws.data_to_send(), deadline)
        response = None
        while response is None:
            events = self._receive(deadline)
            if events is None:
                raise no_answer(url, budget)
            response = next((e for e in events if isinstance(e, Response)), None)
            if response is None and events and events[-1] is _EOF:
                self._lose("AppSync closed the connection during the WebSocket upgrade")
            if self._sock is None:  # lost
                raise self._ended_by()
            # Frames may come in the same read as the upgrade's answer: the session takes them next.
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
        sub_id = self.session.subscribe(channel, self.clock(), deadline)
        self._flush(deadline)
        self._wait(sub_id)
        return sub_id

    def publish(self, channel: str, events: Sequence[str], deadline: float) -> PublishResult:
        """Publish JSON-encoded events, 5 a request (over HTTP with an auth that says so: IAM); every
        request is written before the first answer is awaited. As `AppSyncEventsClient.publish`."""
        if self.auth.publish_over_http:
            batches, result = plan_publish(channel, events, self.max_event_bytes)
            for batch in batches:
                timeout = min(self.http_timeout_s, max(0.001, deadline - self.clock()))
                payload = [events[i] for i in batch]
                successful, failed = self.http_publisher.publish(self.auth, channel, payload, timeout)
                merge(result, batch, successful, failed)
            return sorted_result(result)
        request_id = self.session.publish(channel, events, self.clock(), deadline)
        self._flush(deadline)
        answered: PublishResult = self._wait(request_id)
        return answered

    def next_data(self, deadline: float) -> f.Data | None:
        """The next `data` frame of a subscription; None when `deadline` passes first. Raises
        ConnectionLost when the connection dies."""
        data, session = self._data, self.session
        while not data:
            session.require_open()
            due = session.next_deadline()
            until = deadline if due is None or deadline < due else due
            if not self._step(until) and self.clock() >= deadline:
                return None
        return data.popleft()

    def poll(self) -> None:
        """Take in what already arrived (a thawed sandbox: keep-alives sent while it was frozen, or the
        close that makes it reconnect), without waiting; then judge the silence."""
        if self.session.state is not OPEN:
            return
        while self._step(self.clock(), blocking=False):
            pass
        self.session.advance(self.clock())
        self._handle_events()

    def close(self) -> None:
        """Close with a close frame (best effort, without waiting for the answer)."""
        ws, sock = self._ws, self._sock
        if self.session.state is OPEN and ws is not None and sock is not None:
            try:
                ws.send_close(1000)
                sock.settimeout(0.5)
                for data in ws.data_to_send():
                    sock.sendall(data)
            except OSError:
                pass
        self.session.close()
        self._release()
        self.session.connection_lost(1000, self.clock())
        self._handle_events()

    def abort(self, reason: BaseException | None = None) -> None:
        """Drop the connection at once (a dead or stale socket)."""
        self._release()
        lost = reason or ConnectionLost("the connection to AppSync was dropped; reconnect")
        self.session.connection_lost(self._close_code(), self.clock(), lost)
        self._handle_events()

    # ---------------------------------------------------------------------------- reading
    def _wait(self, request_id: str) -> Any:
        """Read until request `request_id` ends (the session ends each by its deadline); its result,
        or its error raised."""
        self._handle_events()
        ended = self._ended
        while request_id not in ended:
            self._step(self.session.next_deadline())
        end = ended.pop(request_id)
        if isinstance(end, Failed):
            raise end.error
        return end.result

    def _step(self, until: float | None, *, blocking: bool = True) -> bool:
        """One read bounded by `until`: what it brought to the session, or, when nothing came, the
        time; then the session's events handled. False when nothing came."""
        events = self._receive(self.clock() if until is None else until, blocking=blocking)
        if events is None:
            if blocking:
                self.session.advance(self.clock())
        else:
            self._feed(events)
        self._handle_events()
        return events is not None

    def _feed(self, events: list[Any]) -> None:
        session, now, lost = self.session, self.clock(), False
        for event in events:
            if isinstance(event, Frame):
                if event.opcode in DATA_OPCODES:
                    message = self._messages.feed(event)
                    if message is not None:
                        session.receive_text(text_of(message), now)
                elif event.opcode is Opcode.CLOSE:
                    lost = True
            elif event is _EOF:
                lost = True
        if lost:
            session.connection_lost(self._close_code(), now)

    def _receive(self, until: float, *, blocking: bool = True) -> list[Any] | None:
        """One read: websockets' events, ending with _EOF if the server closed the TCP connection;
        None when nothing came by `until` (or the socket is gone)."""
        sock, ws = self._sock, self._ws
        if sock is None or ws is None:
            return None
        if blocking:
            remaining = until - self.clock()
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
            return []
        if size:
            ws.receive_data(self._read_buffer[:size])  # type: ignore[arg-type]  # (copied into its buffer)
        else:
            ws.receive_eof()
        events: list[Any] = ws.events_received()
        replies = ws.data_to_send()  # pongs and the answer to a close
        if replies:
            self._write(replies, self.clock() + 1.0)
        if not size:
            events.append(_EOF)
        return events

    def _handle_events(self) -> None:
        for event in self.session.events_received():
            if isinstance(event, f.Data):
                self._data.append(event)
            elif isinstance(event, (Answered, Failed)):
                self._ended[event.id] = event
            elif isinstance(event, Closed):
                self._release()

    # ---------------------------------------------------------------------------- writing
    def _flush(self, deadline: float) -> None:
        """Write what the session queued, by `deadline` (a socket that does not take it is lost)."""
        texts, ws = self.session.data_to_send(), self._ws
        if not texts or ws is None or self._sock is None:
            return
        try:
            for text in texts:
                ws.send_text(text.encode())
        except InvalidState:  # a close frame came in the same read
            self._lose("AppSync is closing the connection; reconnect")
            return
        self._write(ws.data_to_send(), deadline)

    def _write(self, chunks: list[bytes], deadline: float) -> None:
        sock = self._sock
        for data in chunks:
            if not data or sock is None:
                continue
            try:
                sock.settimeout(max(0.001, deadline - self.clock()))
                sock.sendall(data)
            except TimeoutError:
                self._lose("AppSync stopped reading what this connection sends; reconnect")
                return
            except OSError as exc:
                self._lose(f"the connection to AppSync broke while sending ({exc}); reconnect")
                return

    # ---------------------------------------------------------------------------- helpers
    def _lose(self, message: str) -> None:
        self.abort(ConnectionLost(message))

    def _release(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._owns_publisher:
            self.http_publisher.close()

    def _ended_by(self) -> BaseException:
        return self.session.close_reason or ClientClosed("the connection was closed")

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
        """A thawed sandbox: trust the kept socket only if a frame arrived within its silence timeout
        (`poll()` reads what came while it was frozen, then judges the silence)."""
        conn = self.connection
        if conn is None:
            return
        conn.poll()
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
