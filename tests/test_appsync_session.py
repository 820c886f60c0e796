"""The sans-I/O AppSync Events session (stub_runtime.appsync.session), fed texts and times: no socket,
no clock, no event loop. Unit tests of each exchange, then a hypothesis state machine over any
interleaving of server frames, requests, losses and time."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from stub_runtime.appsync import frames as f
from stub_runtime.appsync.auth import ApiKeyAuth
from stub_runtime.appsync.errors import ClientClosed, ConnectFailed, ConnectionLost, OperationTimeout
from stub_runtime.appsync.publishing import PublishResult
from stub_runtime.appsync.session import (
    CLOSED,
    CLOSING,
    CONNECTING,
    OPEN,
    Acked,
    Answered,
    AppSyncSession,
    Closed,
    Event,
    Failed,
)
from stub_runtime.channels import InvalidChannel
from stub_runtime.errors import LivelambdaError, LocalProtocolError, RemoteProtocolError

URL = "wss://example.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime"
AUTH = ApiKeyAuth("da2-key", "example.appsync-api.us-east-1.amazonaws.com")
T0 = 1000.0


def text(**frame: Any) -> str:
    return json.dumps(frame)


def sent(session: AppSyncSession) -> list[dict[str, Any]]:
    return [json.loads(t) for t in session.data_to_send()]


def connected(now: float = T0, **kw: Any) -> AppSyncSession:
    session = AppSyncSession(URL, AUTH, **kw)
    session.connect(now)
    session.receive_text(text(type="connection_ack", connectionTimeoutMs=300_000), now)
    session.data_to_send()
    session.events_received()
    return session


def ends(events: list[Event]) -> dict[str, Answered | Failed]:
    return {e.id: e for e in events if isinstance(e, (Answered, Failed))}


# ------------------------------------------------------------------------------------------ connecting
def test_connect_sends_init_and_opens_on_the_ack() -> None:
    session = AppSyncSession(URL, AUTH)
    assert session.state is CONNECTING and session.next_deadline() is None and session.is_stale(T0)
    session.connect(T0)
    assert sent(session) == [{"type": "connection_init"}]
    assert session.next_deadline() == T0 + 10.0
    session.receive_text('{"type":"ka"}', T0 + 1)  # before the ack: waited through
    session.receive_text(text(type="connection_ack", payload={"connectionTimeoutMs": 120_000}), T0 + 2)
    assert session.events_received() == [Acked(120_000)]
    assert session.state is OPEN and session.connection_timeout_ms == 120_000
    assert session.connected_at == session.last_frame_at == T0 + 2
    assert session.next_deadline() == T0 + 2 + 120.0  # the silence's
    with pytest.raises(LocalProtocolError):
        session.connect(T0 + 3)


def test_no_ack_in_time_is_a_connect_timeout() -> None:
    session = AppSyncSession(URL, AUTH, ack_timeout_s=5.0)
    session.connect(T0, deadline=T0 + 2.0)  # the caller's deadline comes first
    assert session.next_deadline() == T0 + 2.0
    session.advance(T0 + 1.999)
    assert session.events_received() == [] and session.state is CONNECTING
    session.advance(T0 + 2.0)
    [closed] = session.events_received()
    assert isinstance(closed, Closed) and isinstance(closed.reason, ConnectFailed)
    assert closed.reason.reason == "timeout" and session.state is CLOSED and session.next_deadline() is None


@pytest.mark.parametrize(
    ("frame", "error", "detail"),
    [
        (text(type="connection_error", errors=[{"errorType": "UnauthorizedException", "message": "no"}]),
         f.AppSyncServiceError, "UnauthorizedException"),
        (text(type="subscribe_success", id="x"), RemoteProtocolError, "expected connection_ack"),
    ],
)  # fmt: skip
def test_a_refusal_or_a_stray_frame_before_the_ack_ends_it(frame: str, error: type, detail: str) -> None:
    session = AppSyncSession(URL, AUTH)
    session.connect(T0)
    session.receive_text("garbage", T0)  # counted, not fatal
    session.receive_text(frame, T0)
    [closed] = session.events_received()
    assert isinstance(closed, Closed) and type(closed.reason) is error and detail in str(closed.reason)
    assert session.state is CLOSED and session.close_reason is closed.reason
    assert session.stats["malformed"] == 1


def test_closed_before_the_ack_says_so_with_the_code() -> None:
    session = AppSyncSession(URL, AUTH)
    session.connect(T0)
    session.connection_lost(4001, T0)
    [closed] = session.events_received()
    assert isinstance(closed, Closed) and isinstance(closed.reason, ConnectFailed)
    assert closed.reason.reason == "closed" and "4001" in str(closed.reason)


# ------------------------------------------------------------------------------------------ requests
def test_subscribe_data_and_unsubscribe() -> None:
    session = connected()
    sub_id = session.subscribe("/ns/a/*", T0)
    [frame] = sent(session)
    auth = AUTH.headers("")
    assert frame == {"type": "subscribe", "id": sub_id, "channel": "/ns/a/*", "authorization": auth}
    session.receive_text(text(type="data", id=sub_id, event='{"n":1}'), T0)  # before the success: kept
    session.receive_text(text(type="subscribe_success", id=sub_id), T0)
    session.receive_text(text(type="data", id="someone-else", event="2"), T0)
    data, answered = session.events_received()
    assert data == f.Data(sub_id, {"n": 1}, '{"n":1}')
    assert answered == Answered(sub_id, f.SubscribeSuccess(sub_id))
    assert session.stats["unroutable"] == 1 and session.pending == 0

    request_id = session.unsubscribe(sub_id, T0)
    assert request_id != sub_id and sent(session) == [{"type": "unsubscribe", "id": sub_id}]
    with pytest.raises(LocalProtocolError):  # one at a time
        session.unsubscribe(sub_id, T0)
    session.receive_text(text(type="unsubscribe_success", id=sub_id), T0)
    session.receive_text(text(type="data", id=sub_id, event="3"), T0)  # after it: not delivered
    assert session.events_received() == [Answered(request_id, f.UnsubscribeSuccess(sub_id))]
    assert session.stats["unroutable"] == 2
    with pytest.raises(LocalProtocolError):
        session.unsubscribe(sub_id, T0)


def test_a_refused_subscription_is_a_typed_failure_and_gets_no_data() -> None:
    session = connected()
    sub_id = session.subscribe("/ns/a", T0)
    errors = [{"errorType": "BadRequestException", "message": "Invalid Channel Format"}]
    session.receive_text(text(type="subscribe_error", id=sub_id, errors=errors), T0)
    session.receive_text(text(type="data", id=sub_id, event="1"), T0)
    [failed] = session.events_received()
    assert isinstance(failed, Failed) and isinstance(failed.error, f.AppSyncServiceError)
    assert failed.error.error_type == "BadRequestException" and "/ns/a" in str(failed.error)
    assert session.stats["unroutable"] == 1 and session.state is OPEN


def test_an_answer_of_the_wrong_kind_fails_the_request() -> None:
    session = connected()
    sub_id = session.subscribe("/ns/a", T0)
    session.receive_text(text(type="unsubscribe_success", id=sub_id), T0)
    [failed] = session.events_received()
    assert isinstance(failed, Failed) and type(failed.error) is RemoteProtocolError


def test_publish_merges_its_frames_answers_into_one_result() -> None:
    session = connected()
    events = [json.dumps(i) for i in range(7)] + [json.dumps("x" * f.MAX_EVENT_BYTES)]
    request_id = session.publish("/ns/a", events, T0)
    first, second = sent(session)
    assert first["id"] == request_id and len(first["events"]) == 5 and len(second["events"]) == 2
    # answered out of order; the last event of each frame refused by the service
    for frame in (second, first):
        n = len(frame["events"])
        ok = [{"identifier": f"s{i}", "index": i} for i in range(n - 1)]
        failed = [{"identifier": "f", "index": n - 1, "code": 400, "message": "no"}]
        session.receive_text(text(type="publish_success", id=frame["id"], successful=ok, failed=failed), T0)
    [answered] = session.events_received()
    assert isinstance(answered, Answered) and answered.id == request_id
    result = answered.result
    assert isinstance(result, PublishResult)
    assert [e.index for e in result.successful] == [0, 1, 2, 3, 5]
    assert [(e.index, e.local) for e in result.failed] == [(4, False), (6, False), (7, True)]
    assert session.pending == 0


def test_a_publish_fails_once_and_its_other_answers_are_dropped() -> None:
    session = connected()
    request_id = session.publish("/ns/a", [json.dumps(i) for i in range(6)], T0)
    first, second = sent(session)
    errors = [{"errorType": "UnauthorizedException", "message": "no"}]
    session.receive_text(text(type="publish_error", id=second["id"], errors=errors), T0)
    ok = [{"identifier": f"s{i}", "index": i} for i in range(5)]
    session.receive_text(text(type="publish_success", id=first["id"], successful=ok, failed=[]), T0)
    [failed] = session.events_received()
    assert isinstance(failed, Failed) and failed.id == request_id
    assert isinstance(failed.error, f.AppSyncServiceError) and session.stats["unroutable"] == 1


def test_a_publish_with_nothing_to_send_is_answered_at_once() -> None:
    session = connected()
    request_id = session.publish("/ns/a", [json.dumps("x" * f.MAX_EVENT_BYTES)], T0)
    assert session.data_to_send() == []
    [answered] = session.events_received()
    assert isinstance(answered, Answered) and answered.id == request_id
    assert [e.index for e in answered.result.failed] == [0]  # type: ignore[union-attr]


def test_an_unanswered_request_times_out_and_the_connection_stays() -> None:
    session = connected(ack_timeout_s=3.0)
    slow = session.publish("/ns/a", ['"a"'], T0)
    quick = session.subscribe("/ns/b", T0 + 1, deadline=T0 + 2)  # the caller's deadline first
    [pub, _] = sent(session)
    assert session.next_deadline() == T0 + 2
    session.advance(T0 + 2)
    assert ends(session.events_received()).keys() == {quick}
    assert session.next_deadline() == T0 + 3
    session.advance(T0 + 3)
    [late] = session.events_received()
    assert isinstance(late, Failed) and late.id == slow and isinstance(late.error, OperationTimeout)
    assert "a publish to /ns/a within 3s" in str(late.error)
    ok = [{"identifier": "s", "index": 0}]
    session.receive_text(text(type="publish_success", id=pub["id"], successful=ok, failed=[]), T0 + 4)
    assert session.events_received() == [] and session.stats["unroutable"] == 1
    assert session.state is OPEN


def test_requests_are_refused_unless_open() -> None:
    session = AppSyncSession(URL, AUTH)
    with pytest.raises(ClientClosed):
        session.subscribe("/ns/a", T0)
    with pytest.raises(InvalidChannel):  # checked before anything else
        session.publish("no-slash", ["1"], T0)


# ------------------------------------------------------------------------------------------ liveness
def test_every_frame_counts_as_heard_and_silence_ends_the_connection() -> None:
    session = connected(silence_timeout_s=30.0)  # shorter than connectionTimeoutMs: it wins
    assert session.timeout_s == 30.0
    session.receive_text("not json", T0 + 20)  # garbage is still a sign of life
    assert not session.is_stale(T0 + 49.9) and session.is_stale(T0 + 50)
    pending = session.publish("/ns/a", ['"a"'], T0 + 45)
    session.advance(T0 + 49.9)
    assert session.events_received() == []
    assert session.next_deadline() == T0 + 50
    session.advance(T0 + 50)
    failed, closed = session.events_received()
    assert isinstance(failed, Failed) and failed.id == pending and isinstance(failed.error, ConnectionLost)
    assert isinstance(closed, Closed) and closed.reason is failed.error and "no frame" in str(closed.reason)
    assert session.state is CLOSED and session.is_stale(T0 + 50)
    with pytest.raises(ConnectionLost, match="already gone"):
        session.publish("/ns/a", ['"b"'], T0 + 51)


def test_a_loss_ends_every_request_and_a_close_is_not_a_loss() -> None:
    session = connected()
    sub_id = session.subscribe("/ns/a", T0)
    session.connection_lost(1006, T0 + 1)
    failed, closed = session.events_received()
    assert isinstance(failed, Failed) and failed.id == sub_id and isinstance(failed.error, ConnectionLost)
    assert "code 1006" in str(closed.reason)  # type: ignore[union-attr]
    session.connection_lost(1000, T0 + 2)  # once only
    assert session.events_received() == []

    owner = connected()
    request_id = owner.publish("/ns/a", ['"a"'], T0)
    owner.close()
    failed, closed = owner.events_received()
    assert failed.id == request_id and isinstance(failed.error, ClientClosed)  # type: ignore[union-attr]
    assert closed == Closed(None) and owner.state is CLOSING and owner.close_reason is None
    owner.receive_text('{"type":"ka"}', T0 + 1)  # after close(): nothing more is taken in
    owner.connection_lost(1000, T0 + 1)
    assert owner.state is CLOSED and owner.events_received() == [] and owner.stats["frames"] == 1  # the ack
    with pytest.raises(ClientClosed):
        owner.subscribe("/ns/a", T0 + 2)


def test_idless_errors_keepalives_and_broadcast_errors() -> None:
    session = connected()
    errors = [{"errorType": "X", "message": "id-less"}]
    session.receive_text(text(type="error", errors=errors), T0)
    session.receive_text('{"type":"ka"}', T0)
    session.receive_text(text(type="broadcast_error", id="s", errors=errors), T0)
    session.receive_text('{"type":"connection_ack"}', T0)  # a second ack: nothing to route it to
    session.receive_text(None, T0)  # a binary message
    error, ka = session.events_received()
    assert isinstance(error, f.Error) and session.last_error is error and isinstance(ka, f.KeepAlive)
    counts = {"frames": 6, "keepalives": 1, "malformed": 1, "unroutable": 1, "broadcast_errors": 1}
    assert session.stats == counts


def test_the_session_imports_no_websockets_and_no_asyncio() -> None:
    code = (
        "import sys, stub_runtime.appsync.session; "
        "print(sorted({'websockets', 'asyncio'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------ any interleaving
ACK_TIMEOUT_S = 10.0
ERRORS = [{"errorType": "BadRequestException", "message": "no"}]
ORDER = (CONNECTING, OPEN, CLOSING, CLOSED)


class SessionMachine(RuleBasedStateMachine):
    """Any server text, in any order, for any request or none, with time passing and the transport
    failing: no exception escapes, every request ends exactly once, the state only moves forward, and
    the connection is stale exactly when it has been silent for its timeout."""

    @initialize(silence=st.none() | st.floats(1.0, 400.0), acked=st.booleans())
    def start(self, silence: float | None, acked: bool) -> None:
        self.now = T0
        self._new_session(silence, acked)

    @precondition(lambda self: self.session.state is CLOSED)
    @rule(silence=st.none() | st.floats(1.0, 400.0), acked=st.booleans())
    def redial(self, silence: float | None, acked: bool) -> None:
        """A new connection once this one is over, as the shells make one (the steps stay useful)."""
        self._new_session(silence, acked)

    def _new_session(self, silence: float | None, acked: bool) -> None:
        self.session = AppSyncSession(URL, AUTH, ack_timeout_s=ACK_TIMEOUT_S, silence_timeout_s=silence)
        self.session.connect(self.now)
        self.started: dict[str, float] = {}  # request id -> its deadline
        self.sizes: dict[str, int] = {}  # publish request id -> events
        self.ended: dict[str, int] = {}
        self.frames: dict[str, tuple[str, int]] = {}  # every frame id sent -> (type, events)
        self.unanswered: dict[str, None] = {}  # frame ids this machine has not answered yet, in order
        self.subs: dict[str, None] = {}  # answered subscriptions (ids are random: kept in order)
        self.closed_events = 0
        self.highest = CONNECTING
        self._drain()
        if acked:
            self._feed({"type": "connection_ack", "connectionTimeoutMs": 300_000})

    # ----- helpers
    def _drain(self) -> None:
        for frame in (json.loads(t) for t in self.session.data_to_send()):
            if "id" in frame:
                self.frames[frame["id"]] = (frame["type"], len(frame.get("events", ())))
                self.unanswered[frame["id"]] = None
        for event in self.session.events_received():
            if isinstance(event, (Answered, Failed)):
                assert event.id in self.started, "an end for a request never made"
                self.ended[event.id] = self.ended.get(event.id, 0) + 1
                assert self.ended[event.id] == 1, "a request ended twice"
                if isinstance(event, Answered) and isinstance(event.result, PublishResult):
                    # indexes are the caller's (an answer that leaves some out is taken as it is)
                    result = event.result
                    indexes = [e.index for e in result.successful] + [e.index for e in result.failed]
                    assert set(indexes) <= set(range(self.sizes[event.id])), "an index not the caller's"
                if isinstance(event, Answered) and isinstance(event.result, f.SubscribeSuccess):
                    self.subs[event.id] = None
                if isinstance(event, Answered) and isinstance(event.result, f.UnsubscribeSuccess):
                    self.subs.pop(event.id, None)
            elif isinstance(event, Closed):
                self.closed_events += 1
                self.subs.clear()
            elif isinstance(event, f.Data):
                assert self.session.state is OPEN
        state = self.session.state
        assert ORDER.index(state) >= ORDER.index(self.highest), f"{self.highest} -> {state}"
        self.highest = state

    def _feed(self, value: Any) -> None:
        raw = value if value is None or isinstance(value, str) else json.dumps(value)
        self.session.receive_text(raw, self.now)
        self._drain()

    def _request(self, start: Any) -> None:
        try:
            request_id = start()
        except LivelambdaError as exc:  # refused before anything was sent: not open, or a second unsubscribe
            assert self.session.state is not OPEN or isinstance(exc, LocalProtocolError)
            assert self.session.data_to_send() == []
            return
        self.started[request_id] = self.now + ACK_TIMEOUT_S
        self._drain()

    # ----- the server
    @precondition(lambda self: self.session.state is not CLOSED)  # (once closed: mostly a redial)
    @rule(timeout_ms=st.integers(1, 500_000) | st.none())
    def ack(self, timeout_ms: int | None) -> None:
        self._feed({"type": "connection_ack"} if timeout_ms is None else
                   {"type": "connection_ack", "connectionTimeoutMs": timeout_ms})  # fmt: skip

    @precondition(lambda self: self.session.state is not CLOSED)  # (once closed: mostly a redial)
    @rule(kind=st.sampled_from(["ka", "connection_error", "error", "broadcast_error"]))
    def plain(self, kind: str) -> None:
        frame: dict[str, Any] = {"type": kind}
        if kind != "ka":
            frame["errors"] = ERRORS
        if kind == "broadcast_error":
            frame["id"] = "s"
        self._feed(frame)

    @rule(value=st.text(max_size=40) | st.none() | st.sampled_from(['{"type":"data"}', "[]", '{"type":"x"}']))
    def garbage(self, value: str | None) -> None:
        self._feed(value)

    @rule(data=st.data(), again=st.booleans())
    def answer(self, data: st.DataObject, again: bool) -> None:
        """An answer for a frame sent (in any order; `again`: for any, answered already or not), or
        for an id never sent; mostly the right kind, sometimes an error or the wrong kind."""
        ids = list(self.frames if again else self.unanswered)
        frame_id = data.draw(st.sampled_from(ids) if ids else st.just("never-sent"))
        self.unanswered.pop(frame_id, None)
        sent_type, n = self.frames.get(frame_id, ("publish", 1))
        success = f"{sent_type}_success"
        kind = data.draw(st.sampled_from([success, success, success, f"{sent_type}_error", "error",
                                          "subscribe_success", "publish_success"]))  # fmt: skip
        frame: dict[str, Any] = {"type": kind, "id": frame_id}
        if kind.endswith("_error") or kind == "error":
            frame["errors"] = ERRORS
        elif kind == "publish_success":
            size = data.draw(st.sampled_from([n, n, n, max(0, n - 1), n + 1]))  # or a wrong count
            indexes = data.draw(st.permutations(range(size)))
            cut = data.draw(st.integers(0, size))
            frame["successful"] = [{"identifier": f"s{i}", "index": i} for i in indexes[:cut]]
            failed = indexes[cut:]
            frame["failed"] = [{"identifier": "f", "index": i, "code": 400, "message": "no"} for i in failed]
        self._feed(frame)

    @precondition(lambda self: self.session.state is not CLOSED)  # (once closed: mostly a redial)
    @rule(data=st.data(), known=st.booleans())
    def event(self, data: st.DataObject, known: bool) -> None:
        ids = list(self.subs)
        sub_id = data.draw(st.sampled_from(ids)) if known and ids else "nobody"
        self._feed({"type": "data", "id": sub_id, "event": json.dumps({"n": 1})})

    # ----- the client
    @precondition(lambda self: self.session.state is not CLOSED)  # (once closed: mostly a redial)
    @rule()
    def subscribe(self) -> None:
        self._request(lambda: self.session.subscribe("/ns/a/*", self.now))

    @precondition(lambda self: self.session.state is not CLOSED)  # (once closed: mostly a redial)
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        ids = list(self.subs)
        if ids:
            sub_id = data.draw(st.sampled_from(ids))
            self._request(lambda: self.session.unsubscribe(sub_id, self.now))

    @precondition(lambda self: self.session.state is not CLOSED)  # (once closed: mostly a redial)
    @rule(n=st.integers(0, 12), big=st.booleans())
    def publish(self, n: int, big: bool) -> None:
        events = [json.dumps(i) for i in range(n)] + ([json.dumps("x" * f.MAX_EVENT_BYTES)] if big else [])

        def start() -> str:
            request_id = self.session.publish("/ns/a", events, self.now)
            self.sizes[request_id] = len(events)
            return request_id

        self._request(start)

    # ----- the transport and the time
    @rule(how=st.sampled_from([1000, 1006, 4001, "close"]))
    def end(self, how: int | str) -> None:
        """The transport is lost (with a close code), or the owner closes."""
        if how == "close":
            self.session.close()
        else:
            self.session.connection_lost(int(how), self.now)
        self._drain()

    @rule(dt=st.floats(0.0, 3.0) | st.floats(0.0, 20.0) | st.sampled_from([ACK_TIMEOUT_S, 300.0, 500.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        session = self.session
        due = session.next_deadline()
        session.advance(self.now)
        self._drain()
        if session.state is OPEN:
            assert session.last_frame_at is not None
            assert self.now < session.last_frame_at + session.timeout_s, "silent too long, still open"
            overdue = [r for r, by in self.started.items() if by <= self.now and r not in self.ended]
            assert not overdue, "a request past its deadline still pending"
        after = session.next_deadline()
        assert after is None or after > self.now, "advance() left something due: a shell's timer would spin"
        if due is not None and due > self.now:
            assert self.session.state is self.highest  # nothing was due: nothing changed

    @precondition(lambda self: self.session.state is OPEN)
    @rule(dt=st.floats(0.0, 600.0))
    def peek(self, dt: float) -> None:
        """Staleness asked about without advancing: exactly when silence reached the timeout."""
        session = self.session
        assert session.last_frame_at is not None
        deadline = session.last_frame_at + session.timeout_s  # (as next_deadline() says it)
        assert session.is_stale(self.now + dt) == (self.now + dt >= deadline)
        assert session.is_stale(deadline) and not session.is_stale(math.nextafter(deadline, 0.0))

    # ----- always
    @invariant()
    def requests_end_once(self) -> None:
        pending = {r for r in self.started if r not in self.ended}
        assert self.session.pending == len(pending)
        if self.session.state >= CLOSING:
            assert not pending, "the connection ended with requests never ended"

    @invariant()
    def closed_once(self) -> None:
        assert self.closed_events == (1 if self.session.state >= CLOSING else 0)

    @invariant()
    def stale_when_not_open(self) -> None:
        if self.session.state is not OPEN:
            assert self.session.is_stale(self.now) and self.session.data_to_send() == []


SessionMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_session_machine = SessionMachine.TestCase
