"""The stub's half of the live conversation (stub_runtime/conversation.py), without I/O: any sequence of
publishes, messages (ours and others', every kind), lost connections and waits, on a simulated clock.

The model here is written from the rules in the module's docstring: every invocation ends exactly once
and by its deadline; it ends with DevServerNotRunning only when no ack came within the ack timeout
(a copy on a new connection getting a whole one), with DevServerLost only after `silence_timeout_s`
without a message once acknowledged, never while acks and heartbeats keep coming; one-event requests
are asked again every quarter of the ack timeout until acknowledged; every error after the request may
have left says that the handler may have run.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from stub_runtime import live_protocol as lp
from stub_runtime.appsync.errors import ConnectionLost
from stub_runtime.conversation import Answered, Failed, Invocation, Outcome, StubConversation
from stub_runtime.envelope import Message
from stub_runtime.errors import RemoteProtocolError
from stub_runtime.outcomes import (
    MAY_HAVE_RUN,
    DeadlineExceeded,
    DevServerLost,
    DevServerNotRunning,
    EndpointUnreachable,
    Rejected,
)

SESSION, SANDBOX = "s1", "sb1"
EPS = 1e-9


def says_it_may_have_run(error: Exception) -> bool:
    return isinstance(error, (DevServerLost, DeadlineExceeded, Rejected)) or MAY_HAVE_RUN in str(error)


class StubMachine(RuleBasedStateMachine):
    """One sandbox's conversation, invocation after invocation, against a model of the rules."""

    @initialize(ack=st.floats(0.05, 5.0), silence=st.floats(0.05, 10.0))
    def setup(self, ack: float, silence: float) -> None:
        self.ack, self.silence = ack, silence
        self.conv = StubConversation(SESSION, SANDBOX, ack_timeout_s=ack, silence_timeout_s=silence)
        self.t = 0.0
        self.n = 0
        self.begin(timeout=3.0, events=1)

    def begin(self, timeout: float, events: int) -> None:
        self.n += 1
        self.rid = f"req-{self.n}"
        self.inv = Invocation(self.rid, {"event": {"n": self.n}}, self.t + timeout, timeout)
        self.events = events
        self.pending: Message | None = self.conv.start(self.inv, self.t)
        assert self.conv.outcome is None
        self.check_request(self.pending)
        self.ended_at: float | None = None
        self.outcome: Outcome | None = None
        self.sent = False  # published at least once
        self.ack_by = math.inf
        self.acked = False
        self.last_heard = self.t
        self.last_publish = self.t
        self.message_ids: set[str] = set()

    def check_request(self, message: Message | None) -> None:
        assert message is not None
        assert (message.kind, message.session, message.invocation_id, message.sandbox_id) == (
            lp.INVOKE, SESSION, self.rid, SANDBOX,
        )  # fmt: skip
        assert message.body is self.inv.body  # the same body, not a copy

    @property
    def live(self) -> bool:
        return self.conv.outcome is None

    def settle(self) -> None:
        """After any input: take the next request to publish, and check an outcome that just came."""
        if self.pending is None:
            self.pending = self.conv.request_to_send()
            if self.pending is not None:
                self.check_request(self.pending)
        outcome = self.conv.outcome
        if outcome is not None and self.outcome is None:
            self.outcome, self.ended_at = outcome, self.t
            assert self.t <= self.inv.deadline + EPS  # by its deadline, whatever ended it
            assert self.conv.request_to_send() is None
            if isinstance(outcome, Failed) and self.sent:
                assert says_it_may_have_run(outcome.error), outcome.error

    # ------------------------------------------------------------------ the shell's moves
    @precondition(lambda self: self.live and self.pending is not None)
    @rule(took=st.floats(0.0, 0.3), new_connection=st.booleans(), fails=st.integers(0, 9))
    def publish(self, took: float, new_connection: bool, fails: int) -> None:
        """The shell publishes the pending request (a publish is bounded by the deadline)."""
        message, self.pending = self.pending, None
        assert message is not None
        assert message.message_id not in self.message_ids  # a fresh id each copy
        self.message_ids.add(message.message_id)
        if fails == 0 and not self.sent:  # could not connect: nothing left
            error = self.conv.failed(EndpointUnreachable("wss://x", "no route"))
            assert MAY_HAVE_RUN not in str(error)
            self.settle()
            return
        self.conv.publishing()
        self.t = min(self.t + took, max(self.t, self.inv.deadline))
        if fails == 1:  # written, then the connection died twice: the shell gives up
            error = self.conv.failed(ConnectionLost("gone"))
            assert MAY_HAVE_RUN in str(error)
            self.settle()
            return
        self.conv.published(self.t, events=self.events, new_connection=new_connection)
        if not self.sent:
            self.sent = True
            self.ack_by = self.t + self.ack
            self.last_heard = self.t
        elif new_connection:
            self.ack_by = max(self.ack_by, self.t + self.ack)
        self.last_publish = self.t
        self.settle()

    @precondition(lambda self: self.live and self.pending is None)
    @rule(dt=st.floats(0.0, 3.0) | st.sampled_from([0.0, 1e-6]))
    def wait(self, dt: float) -> None:
        """The shell waits for a message; none comes within `dt`, or by the time it was told."""
        due = self.conv.next_deadline()
        assert due <= self.inv.deadline + EPS
        if self.t + dt < due:
            self.t += dt
            self.conv.wake(self.t)  # woken early (another invocation's message): nothing is due
            assert self.conv.outcome is None
        else:
            self.t = max(self.t, due)
            self.conv.wake(self.t)
            self.check_wake()
        self.settle()
        if self.live and not self.acked:  # asked again when a quarter of the ack timeout passed
            resend = self.events == 1 and self.t >= self.last_publish + self.ack / 4
            assert (self.pending is not None) == resend
        elif self.live:
            assert self.pending is None

    def check_wake(self) -> None:
        outcome, t = self.conv.outcome, self.t
        if outcome is None:
            if self.acked:
                assert t < self.inv.deadline and t < self.last_heard + self.silence
            else:
                assert t < self.inv.deadline and t < self.ack_by
            return
        assert isinstance(outcome, Failed)
        error = outcome.error
        if not self.acked:
            assert isinstance(error, DevServerNotRunning), error
            assert t >= min(self.ack_by, self.inv.deadline) - EPS
        elif isinstance(error, DeadlineExceeded):
            assert t >= self.inv.deadline - EPS
        else:
            assert isinstance(error, DevServerLost), error
            assert t >= self.last_heard + self.silence - EPS  # never while messages keep coming

    @precondition(lambda self: self.live and self.pending is None and self.sent)
    @rule(
        kind=st.sampled_from([lp.ACK, lp.HEARTBEAT, lp.RESULT, lp.REJECT, lp.INVOKE]),
        whose=st.sampled_from(["ours", "ours", "ours", "other request", "other sandbox"]),
        body=st.sampled_from([{}, {"status": "ok", "response": 7}, {"message": "no"}, [1], None]),
        at=st.floats(0.0, 1.0),
    )
    def arrive(self, kind: str, whose: str, body: object, at: float) -> None:
        """A message arrives before the time the shell waits until."""
        self.t += (max(self.t, self.conv.next_deadline()) - self.t) * at
        rid = "req-other" if whose == "other request" else self.rid
        sandbox = "sb-other" if whose == "other sandbox" else SANDBOX
        self.conv.receive(Message(kind, SESSION, rid, sandbox, body), self.t)
        outcome = self.conv.outcome
        if whose != "ours":
            assert outcome is None
        elif kind in (lp.ACK, lp.HEARTBEAT):
            self.acked = True
        elif kind == lp.RESULT:
            if isinstance(body, dict) and "status" in body:
                assert isinstance(outcome, Answered) and outcome.body is body
            else:
                assert isinstance(outcome, Failed) and isinstance(outcome.error, RemoteProtocolError)
        elif kind == lp.REJECT:
            assert isinstance(outcome, Failed) and isinstance(outcome.error, Rejected)
            if isinstance(body, dict) and body.get("message"):
                assert str(outcome.error) == body["message"]
        if whose == "ours":
            self.last_heard = self.t
        self.settle()

    @precondition(lambda self: self.live and self.pending is None and self.sent)
    @rule()
    def lose_connection(self) -> None:
        """The socket died while waiting: the request goes out again, whatever the state."""
        self.conv.connection_lost(self.t)
        self.settle()
        assert self.pending is not None

    @precondition(lambda self: not self.live)
    @rule(kind=st.sampled_from([lp.ACK, lp.RESULT, lp.REJECT]), dt=st.floats(0.0, 30.0))
    def after_the_end(self, kind: str, dt: float) -> None:
        """Nothing changes an outcome: late messages, lost connections, time."""
        before = self.conv.outcome
        self.t += dt
        self.conv.receive(Message(kind, SESSION, self.rid, SANDBOX, {"status": "ok"}), self.t)
        self.conv.connection_lost(self.t)
        self.conv.wake(self.t)
        assert self.conv.outcome is before
        assert self.conv.request_to_send() is None
        assert self.conv.next_deadline() == math.inf

    @precondition(lambda self: not self.live)
    @rule(timeout=st.floats(0.01, 30.0), events=st.sampled_from([1, 1, 2, 7]))
    def next_invocation(self, timeout: float, events: int) -> None:
        self.begin(timeout, events)

    # ------------------------------------------------------------------ always
    @invariant()
    def never_past_the_deadline(self) -> None:
        if self.live:
            assert self.conv.next_deadline() <= self.inv.deadline + EPS

    @invariant()
    def one_outcome(self) -> None:
        if self.outcome is not None:
            assert self.conv.outcome is self.outcome


TestStubMachine = StubMachine.TestCase
TestStubMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# ------------------------------------------------------------------ liveness, end to end in time


def run_waiting(conv: StubConversation, t: float, until: float, arrivals: list[tuple[float, str]]) -> float:
    """The shell's loop: wait until the next arrival or the conversation's deadline, whichever first."""
    arrivals = sorted(arrivals)
    while conv.outcome is None and t < until:
        due = conv.next_deadline()
        if arrivals and arrivals[0][0] < due:
            t, kind = arrivals.pop(0)
            conv.receive(Message(kind, SESSION, "r", SANDBOX, {"status": "ok", "response": 1}), t)
        else:
            t = due
            conv.wake(t)
        if conv.request_to_send() is not None:
            conv.publishing()
            conv.published(t, events=1, new_connection=False)
    return t


def started(ack: float, silence: float, timeout: float) -> StubConversation:
    conv = StubConversation(SESSION, SANDBOX, ack_timeout_s=ack, silence_timeout_s=silence)
    conv.start(Invocation("r", {}, timeout, timeout), 0.0)
    conv.publishing()
    conv.published(0.0, events=1, new_connection=False)
    return conv


@settings(max_examples=200, deadline=None)
@given(
    silence=st.floats(0.2, 5.0),
    beat=st.floats(0.05, 0.95),
    runs_for=st.floats(0.0, 100.0),
    first=st.floats(0.0, 0.99),
)
def test_an_ack_and_heartbeats_keep_a_long_invocation_alive(
    silence: float, beat: float, runs_for: float, first: float
) -> None:
    """Heartbeats more often than the silence timeout: the result ends it, however long the run."""
    ack = 3.0
    conv = started(ack, silence, timeout=runs_for + 10.0)
    beats = [(first * ack, lp.ACK)]
    while beats[-1][0] + beat * silence < runs_for:
        beats.append((beats[-1][0] + beat * silence, lp.HEARTBEAT))
    beats.append((max(runs_for, beats[-1][0]), lp.RESULT))
    run_waiting(conv, 0.0, math.inf, beats)
    assert isinstance(conv.outcome, Answered)


@settings(max_examples=200, deadline=None)
@given(silence=st.floats(0.2, 5.0), acked_at=st.floats(0.0, 2.9), beats=st.integers(0, 5))
def test_silence_after_the_ack_ends_it_with_dev_server_lost(
    silence: float, acked_at: float, beats: int
) -> None:
    conv = started(3.0, silence, timeout=1000.0)
    arrivals = [(acked_at, lp.ACK)] + [
        (acked_at + i * silence / 2, lp.HEARTBEAT) for i in range(1, beats + 1)
    ]
    last = arrivals[-1][0]
    t = run_waiting(conv, 0.0, math.inf, arrivals)
    assert isinstance(conv.outcome, Failed) and isinstance(conv.outcome.error, DevServerLost)
    assert t == pytest.approx(last + silence)
    assert MAY_HAVE_RUN not in str(conv.outcome.error) and "no heartbeat" in str(conv.outcome.error)


def test_no_ack_asks_three_more_times_then_says_not_running() -> None:
    """Today's timings: copies at 1/4, 1/2 and 3/4 of the ack timeout, the end at the ack timeout."""
    conv = started(2.0, 5.0, timeout=100.0)
    copies = []
    t = 0.0
    while conv.outcome is None:
        t = conv.next_deadline()
        conv.wake(t)
        if conv.request_to_send() is not None:
            copies.append(t)
            conv.publishing()
            conv.published(t, events=1, new_connection=False)
    assert copies == pytest.approx([0.5, 1.0, 1.5])
    assert t == pytest.approx(2.0)
    error = conv.outcome.error  # type: ignore[union-attr]
    assert isinstance(error, DevServerNotRunning) and MAY_HAVE_RUN in str(error)


def test_a_copy_on_a_new_connection_gets_a_whole_ack_timeout() -> None:
    conv = started(2.0, 5.0, timeout=100.0)
    conv.connection_lost(1.5)
    assert conv.request_to_send() is not None
    conv.publishing()
    conv.published(1.8, events=1, new_connection=True)
    assert conv.next_deadline() == pytest.approx(2.3)  # the next copy; the end moved to 3.8
    t = run_waiting(conv, 1.8, math.inf, [])
    assert t == pytest.approx(3.8)


def test_a_large_request_is_not_sent_again_until_a_reconnect() -> None:
    conv = StubConversation(SESSION, SANDBOX, ack_timeout_s=2.0, silence_timeout_s=5.0)
    conv.start(Invocation("r", {}, 100.0, 100.0), 0.0)
    conv.publishing()
    conv.published(0.0, events=7, new_connection=False)
    assert conv.next_deadline() == pytest.approx(2.0)
    conv.wake(1.0)
    assert conv.request_to_send() is None
    conv.connection_lost(1.0)
    assert conv.request_to_send() is not None
