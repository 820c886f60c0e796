"""Sans-I/O AppSync Events session: one connection's protocol, shared by the stub's blocking client
and the dev server's asyncio one, the way websockets' `protocol.py` is shared by its own.

It reads no socket and no clock: the shell feeds in what it read and the time, asks for requests,
and carries out what it reads back (texts to write, events, the next deadline)::

    session = AppSyncSession(realtime_url, auth)
    ...                                           # the shell opens the WebSocket, then:
    session.connect(now)                          # connection_init, the ack awaited until a deadline
    for text in session.data_to_send(): write(text)
    session.receive_text(text, now)               # each message read (None: a binary one)
    for event in session.events_received(): ...   # what it meant
    session.advance(now)                          # at next_deadline(): what is overdue ends
    session.connection_lost(code, now)            # the transport ended

Events: `Acked` (connection_ack), `Answered(id, result)` / `Failed(id, error)` (a request's end),
`frames.Data` (an event of one of its subscriptions), `frames.KeepAlive`, `frames.Error` (an
id-less `error` frame), `Closed(reason)` (once, when the connection ends; None after `close()`).

Requests (`subscribe`, `unsubscribe`, `publish`) return an id and queue their frames; each ends
exactly once: `Answered` with its result (a `PublishResult` for a publish, merged over its frames
of five events; the success frame otherwise), or `Failed` with a typed error: the
`AppSyncServiceError` the server answered, `OperationTimeout` at its deadline, or the error that
ended the connection (`ConnectionLost`; `ClientClosed` after `close()`).

The state only moves forward: CONNECTING -> OPEN -> CLOSING (closed by its owner, the transport
not yet gone) -> CLOSED. The connection is stale, and ends at `advance()`, once it has been silent
for `timeout_s`: connectionTimeoutMs from the ack, or `silence_timeout_s` when shorter.

Signing is the `auth`'s (IAM reads its credentials and the time itself); new ids are random.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from stub_runtime.appsync import frames as f
from stub_runtime.appsync.auth import Auth
from stub_runtime.appsync.errors import (
    ClientClosed,
    ConnectionLost,
    OperationTimeout,
    closed_before_ack,
    no_answer,
)
from stub_runtime.appsync.publishing import (
    PublishResult,
    check_channel,
    merge_reply,
    plan_publish,
    publish_frame,
    raise_reply,
    sorted_result,
)
from stub_runtime.errors import LocalProtocolError, RemoteProtocolError


class State(enum.IntEnum):
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


CONNECTING, OPEN, CLOSING, CLOSED = State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED


# ------------------------------------------------------------------------------------------ events
class Acked(f._Record):
    """connection_ack arrived: the connection is open."""

    __slots__ = _fields = ("connection_timeout_ms",)

    def __init__(self, connection_timeout_ms: int) -> None:
        self.connection_timeout_ms = connection_timeout_ms


class Answered(f._Record):
    """Request `id` succeeded: `result` is a PublishResult, or the SubscribeSuccess /
    UnsubscribeSuccess frame."""

    __slots__ = _fields = ("id", "result")

    def __init__(self, id: str, result: PublishResult | f.SubscribeSuccess | f.UnsubscribeSuccess) -> None:
        self.id = id
        self.result = result


class Failed(f._Record):
    """Request `id` failed with `error` (raise it)."""

    __slots__ = _fields = ("id", "error")

    def __init__(self, id: str, error: BaseException) -> None:
        self.id = id
        self.error = error


class Closed(f._Record):
    """The connection ended: `reason` is why (ConnectFailed, AppSyncServiceError for a
    connection_error, RemoteProtocolError, ConnectionLost), None after `close()`. The shell drops its
    transport."""

    __slots__ = _fields = ("reason",)

    def __init__(self, reason: BaseException | None) -> None:
        self.reason = reason


Event = Acked | Answered | Failed | Closed | f.Data | f.KeepAlive | f.Error


class _Request:
    """One request in flight: `frames` its frames still unanswered (frame id -> the indexes of the
    caller's events it carries: a publish spans a frame per five events and merges their answers into
    `result`)."""

    __slots__ = ("deadline", "expects", "frames", "id", "result", "wait", "what")

    def __init__(
        self,
        id: str,
        expects: type[f.ServerFrame],
        what: str,
        deadline: float,
        wait: float,
        result: PublishResult | None = None,
    ) -> None:
        self.id = id
        self.expects = expects
        self.what = what
        self.deadline = deadline
        self.wait = wait
        self.result = result
        self.frames: dict[str, list[int]] = {}


class AppSyncSession:
    """One AppSync Events connection's protocol. `endpoint` (the realtime URL) is only named in
    errors; `ack_timeout_s` bounds connection_ack and each answer; `max_event_bytes`: events above it
    are not sent and come back as local failures (None: let the service judge)."""

    def __init__(
        self,
        endpoint: str,
        auth: Auth,
        *,
        ack_timeout_s: float = 10.0,
        silence_timeout_s: float | None = None,
        max_event_bytes: int | None = f.MAX_EVENT_BYTES,
    ) -> None:
        self.endpoint = endpoint
        self.auth = auth
        self.ack_timeout_s = ack_timeout_s
        self.silence_timeout_s = silence_timeout_s
        self.max_event_bytes = max_event_bytes
        self.state = CONNECTING
        self.connection_timeout_ms: int | None = None
        self.timeout_s = self._silence_after(f.DEFAULT_CONNECTION_TIMEOUT_MS)  # set again by the ack
        self.connected_at: float | None = None
        self.last_frame_at: float | None = None
        self.last_error: f.Error | None = None  # the last id-less `error` frame
        self.close_reason: BaseException | None = None
        self.stats = {"frames": 0, "keepalives": 0, "malformed": 0, "unroutable": 0, "broadcast_errors": 0}
        self._ack_by: float | None = None
        self._ack_wait = 0.0
        self._subs: dict[str, str] = {}  # subscription id -> channel, from the subscribe request on
        self._pending: dict[str, _Request] = {}  # by request id
        self._frames: dict[str, _Request] = {}  # by the id of a frame still unanswered
        self._out: list[str] = []
        self._events: list[Event] = []

    def __repr__(self) -> str:
        return f"<AppSyncSession {self.endpoint} {self.state.name}>"

    # ---------------------------------------------------------------------------- read out
    def data_to_send(self) -> list[str]:
        """The texts to write, in order (each one WebSocket text message)."""
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[Event]:
        """What happened since the last call, in order."""
        events, self._events = self._events, []
        return events

    @property
    def pending(self) -> int:
        """Requests in flight."""
        return len(self._pending)

    def is_stale(self, now: float) -> bool:
        """True when the connection must not be trusted: not open, or silent for `timeout_s`."""
        if self.state is not OPEN or self.last_frame_at is None:
            return True
        return now >= self.last_frame_at + self.timeout_s  # as next_deadline() computes it

    def next_deadline(self) -> float | None:
        """When `advance()` must be called next (the ack's deadline, an answer's, the silence's);
        None when nothing is due."""
        if self.state is CONNECTING:
            return self._ack_by
        if self.state is not OPEN or self.last_frame_at is None:
            return None
        soonest = self.last_frame_at + self.timeout_s
        for request in self._pending.values():
            if request.deadline < soonest:
                soonest = request.deadline
        return soonest

    # ---------------------------------------------------------------------------- requests
    def connect(self, now: float, deadline: float | None = None) -> None:
        """The WebSocket is open: send connection_init; the ack is awaited until `deadline` and at
        most `ack_timeout_s` (then the connection ends with a ConnectFailed "timeout")."""
        if self.state is not CONNECTING or self._ack_by is not None:
            raise LocalProtocolError(f"connect() on a session that is {self.state.name.lower()}")
        self._ack_by = self._answer_by(now, deadline)
        self._ack_wait = self._ack_by - now
        self._out.append(f.ConnectionInit().encode())

    def subscribe(self, channel: str, now: float, deadline: float | None = None) -> str:
        """Subscribe to `channel`; answered with the SubscribeSuccess. Data for the subscription is
        delivered from now on, until it is unsubscribed or refused."""
        check_channel(channel, subscribe=True)
        self.require_open()
        frame = f.Subscribe(channel, self.auth.headers(f.subscribe_body(channel)))
        self._subs[frame.id] = channel
        request = self._start(frame.id, f.SubscribeSuccess, f"the subscription to {channel}", now, deadline)
        self._send(request, frame.id, frame.encode())
        return frame.id

    def unsubscribe(self, sub_id: str, now: float, deadline: float | None = None) -> str:
        """End subscription `sub_id` once it is answered (PROTOCOL.md: an unsubscribe before the
        subscribe_success may be ignored); its data keeps coming until the answer. Returns the
        request's own id (the frame carries the subscription's)."""
        self.require_open()
        channel = self._subs.get(sub_id)
        if channel is None or sub_id in self._frames:
            raise LocalProtocolError("unsubscribe() of a subscription that is not active")
        what = f"unsubscribing from {channel}"
        request = self._start(f.new_id(), f.UnsubscribeSuccess, what, now, deadline)
        self._send(request, sub_id, f.Unsubscribe(sub_id).encode())
        return request.id

    def publish(self, channel: str, events: Sequence[str], now: float, deadline: float | None = None) -> str:
        """Publish JSON-encoded events, five a frame, every frame queued at once; answered with one
        PublishResult indexed like `events` (oversized ones in `failed`, `local=True`, unsent)."""
        batches, result = plan_publish(channel, events, self.max_event_bytes)
        self.require_open()
        if not batches:  # nothing to send: answered now
            request_id = f.new_id()
            self._events.append(Answered(request_id, sorted_result(result)))
            return request_id
        what, request = f"a publish to {channel}", None
        for batch in batches:
            frame = publish_frame(self.auth, channel, [events[i] for i in batch])
            if request is None:  # the request's id: its first frame's
                request = self._start(frame.id, f.PublishSuccess, what, now, deadline, result)
            self._send(request, frame.id, frame.encode(), batch)
        assert request is not None
        return request.id

    def _start(
        self,
        request_id: str,
        expects: type[f.ServerFrame],
        what: str,
        now: float,
        deadline: float | None,
        result: PublishResult | None = None,
    ) -> _Request:
        by = self._answer_by(now, deadline)
        request = self._pending[request_id] = _Request(request_id, expects, what, by, by - now, result)
        return request

    def _send(self, request: _Request, frame_id: str, text: str, batch: list[int] | None = None) -> None:
        request.frames[frame_id] = batch or []
        self._frames[frame_id] = request
        self._out.append(text)

    def _silence_after(self, connection_timeout_ms: int) -> float:
        """Silence after which the connection is dead: connectionTimeoutMs, or `silence_timeout_s`
        when that is shorter."""
        timeout = connection_timeout_ms / 1000
        silence = self.silence_timeout_s
        return silence if silence is not None and silence < timeout else timeout

    def _answer_by(self, now: float, deadline: float | None) -> float:
        by = now + self.ack_timeout_s
        return by if deadline is None or deadline > by else deadline

    def require_open(self) -> None:
        """Raise unless open: ConnectionLost when the connection was lost, ClientClosed otherwise."""
        if self.state is not OPEN:
            if isinstance(self.close_reason, ConnectionLost):
                raise ConnectionLost(f"{self.close_reason} (the connection is already gone)")
            state = self.state.name.lower()
            raise ClientClosed(f"the AppSync connection is {state}: connect, or make a new one")

    # ---------------------------------------------------------------------------- feed in
    def receive_text(self, text: str | None, now: float) -> None:
        """A whole message the server sent (None: a binary one, which AppSync never sends), read at
        `now`. Any text is taken: what cannot be parsed is counted in `stats["malformed"]`."""
        state = self.state
        if state >= CLOSING:
            return
        self.last_frame_at = now
        stats = self.stats
        stats["frames"] += 1
        if text is None:
            stats["malformed"] += 1
            return
        try:
            frame = f.parse_server_frame(text)
        except RemoteProtocolError:
            stats["malformed"] += 1
            return
        if state is OPEN:
            self._dispatch(frame)
        else:
            self._connecting(frame, now)

    def advance(self, now: float) -> None:
        """The time is `now`: an ack or an answer overdue ends, a connection silent for `timeout_s`
        ends (the shell calls this at `next_deadline()`; frames read first count as heard)."""
        state = self.state
        if state is CONNECTING:
            if self._ack_by is not None and now >= self._ack_by:
                self._close(no_answer(self.endpoint, self._ack_wait))
            return
        if state is not OPEN or self.last_frame_at is None:
            return
        if now >= self.last_frame_at + self.timeout_s:
            self._close(ConnectionLost(
                f"no frame from AppSync for {self.timeout_s:g}s (connectionTimeoutMs "
                f"{self.connection_timeout_ms}): the connection is dead; reconnect"
            ))  # fmt: skip
            return
        overdue = [r for r in self._pending.values() if now >= r.deadline]
        for request in overdue:
            late = OperationTimeout(f"AppSync did not answer {request.what} within {request.wait:.3g}s")
            self._fail(request, late)

    def connection_lost(self, code: int, now: float, error: BaseException | None = None) -> None:
        """The transport ended (`code`: the close code received, 1006 without one); `error`, when the
        shell knows better why (a failed dial, a broken send)."""
        state = self.state
        if state is CLOSED:
            return
        if state is CLOSING:
            self.state = CLOSED
            return
        if state is CONNECTING:
            if error is None or isinstance(error, ConnectionLost):
                error = closed_before_ack(self.endpoint, code)
        elif error is None:
            error = ConnectionLost(f"AppSync closed the connection (code {code}); reconnect")
        self._close(error)

    def close(self) -> None:
        """The owner closes: every request in flight fails with ClientClosed; CLOSING until the
        shell reports the transport gone (`connection_lost`)."""
        if self.state >= CLOSING:
            return
        self.state = CLOSING
        self._end_all(ClientClosed("the AppSync connection was closed"))
        self._events.append(Closed(None))

    # ---------------------------------------------------------------------------- frames
    def _connecting(self, frame: f.ServerFrame, now: float) -> None:
        try:
            ack = f.acked(frame, self.endpoint)
        except RemoteProtocolError as exc:  # connection_error, or a frame out of place
            self._close(exc)
            return
        if ack is None:
            self.stats["keepalives"] += 1
            return
        self.state = OPEN
        self.connection_timeout_ms = ack.connection_timeout_ms
        self.timeout_s = self._silence_after(ack.connection_timeout_ms)
        self.connected_at = now
        self._ack_by = None
        self._events.append(Acked(ack.connection_timeout_ms))

    def _dispatch(self, frame: f.ServerFrame) -> None:
        if isinstance(frame, f.Data):  # the live path's frame: first
            if frame.id in self._subs:
                self._events.append(frame)
            else:
                self.stats["unroutable"] += 1
        elif isinstance(frame, f.KeepAlive):
            self.stats["keepalives"] += 1
            self._events.append(frame)
        elif isinstance(frame, f.BroadcastError):
            self.stats["broadcast_errors"] += 1
        elif isinstance(frame, (f.ConnectionAck, f.ConnectionError)):  # only while connecting
            self.stats["unroutable"] += 1
        elif isinstance(frame, f.Error) and frame.id is None:
            self.last_error = frame
            self._events.append(frame)
        else:
            request = self._frames.pop(frame.id, None)  # type: ignore[arg-type]  # an Error's id is set here
            if request is None:
                self.stats["unroutable"] += 1
            else:
                self._answer(request, frame.id, frame)  # type: ignore[arg-type]

    def _answer(self, request: _Request, frame_id: str, frame: f.ServerFrame) -> None:
        try:
            batch = request.frames.pop(frame_id)
            if request.result is not None:  # a publish: merged, answered once every frame is
                merge_reply(request.result, batch, frame, request.what)
                if request.frames:
                    return
                result: PublishResult | f.ServerFrame = sorted_result(request.result)
            else:
                raise_reply(frame, request.what)
                if type(frame) is not request.expects:
                    raise RemoteProtocolError(f"{request.what} was answered with {type(frame).__name__}")
                result = frame
        except RemoteProtocolError as exc:
            self._fail(request, exc)
            return
        del self._pending[request.id]
        if request.expects is f.UnsubscribeSuccess:
            self._subs.pop(frame_id, None)
        self._events.append(Answered(request.id, result))  # type: ignore[arg-type]

    # ---------------------------------------------------------------------------- endings
    def _fail(self, request: _Request, error: BaseException) -> None:
        self._pending.pop(request.id, None)
        for frame_id in request.frames:
            self._frames.pop(frame_id, None)
        if request.expects is f.SubscribeSuccess:
            self._subs.pop(request.id, None)
        self._events.append(Failed(request.id, error))

    def _end_all(self, error: BaseException) -> None:
        for request in list(self._pending.values()):
            self._fail(request, error)
        self._subs.clear()

    def _close(self, reason: BaseException) -> None:
        """The connection ends, by the session's judgement or the transport's loss."""
        self.state = CLOSED
        self.close_reason = reason
        self._end_all(reason)
        self._events.append(Closed(reason))
