"""Both halves of the live conversation coupled, without I/O: the stub's (stub_runtime/conversation.py)
and the dev server's (devserver/live/conversation.py), each behind the real envelope (signed, chunked,
reassembled), over a simulated AppSync that delivers in any order, twice, or never, while the stub's
connection drops and the dev server restarts (with its on-disk executed log), on a simulated clock.

Proved, whatever the channel does: a handler runs at most once per request id; every invocation ends
exactly once, by its deadline; an answer is the invocation's own result. And with a channel that
delivers (after a delay): an ack and heartbeats keep a long invocation alive to its result, and a dev
server that dies mid-run ends it with DevServerLost once the silence timeout passes.
"""

from __future__ import annotations

import heapq
import itertools
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from devserver.live.conversation import DevServerConversation, Refused, Reply, Request, Run
from devserver.live.executed import ExecutedLog
from stub_runtime import live_protocol as lp
from stub_runtime.conversation import Answered, Failed, Invocation, StubConversation
from stub_runtime.envelope import EnvelopeRejected, Message, Reassembler, encode
from stub_runtime.outcomes import DevServerLost

SESSION, SANDBOX, SECRET = "s1", "sb1", b"k" * 32
EPOCH_MS = 1_700_000_000_000
# The executed log writes and renames a file per restart: in memory when the machine has a tmpfs.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
EPS = 1e-9
SMALL_EVENTS = 1100  # an event budget that cuts a "large" request into several chunks


def wall_ms(t: float) -> int:
    return EPOCH_MS + int(t * 1000)


class DevServer:
    """The dev server's half behind its Reassembler, as Bridge drives it (without the network)."""

    def __init__(self, executed: ExecutedLog, *, ack_delay_s: float, heartbeat_s: float) -> None:
        self.reassembler = Reassembler(SECRET, SESSION)
        self.conv = DevServerConversation(
            ack_delay_s=ack_delay_s, heartbeat_interval_s=heartbeat_s, executed=executed
        )
        self.running: dict[str, Request] = {}
        self.refused: Counter[str] = Counter()

    def feed(self, event: str, t: float, runs: Counter[str]) -> list[Reply]:
        try:
            message = self.reassembler.feed(event, wall_ms(t))
        except EnvelopeRejected:  # a copy of a message already complete: dropped, as the bridge does
            return []
        if message is None:
            return []
        replies = []
        for action in self.conv.receive(message, t, wall_ms(t)):
            if isinstance(action, Run):
                runs[action.invocation.request_id] += 1
                self.running[action.invocation.request_id] = action.request
            elif isinstance(action, Reply):
                replies.append(action)
            else:
                assert isinstance(action, Refused)
                self.refused[action.reason] += 1
        return replies

    def finish(self, rid: str, t: float) -> Reply | None:
        return self.conv.finished(self.running.pop(rid), {"status": "ok", "response": rid}, t)


def encoded(message: Message, t: float, budget: int | None = None) -> list[str]:
    if budget is None:
        return encode(message, SECRET, wall_ms(t))
    return encode(message, SECRET, wall_ms(t), budget_bytes=budget)


class LiveMachine(RuleBasedStateMachine):
    @initialize(
        ack=st.floats(0.1, 3.0),
        silence=st.floats(0.2, 5.0),
        ack_delay=st.floats(0.0, 0.5),
        heartbeat=st.floats(0.05, 2.0),
    )
    def setup(self, ack: float, silence: float, ack_delay: float, heartbeat: float) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="conv-live-", dir=SCRATCH))
        self.ack_delay, self.heartbeat = ack_delay, heartbeat
        self.stub = StubConversation(SESSION, SANDBOX, ack_timeout_s=ack, silence_timeout_s=silence)
        self.stub_reassembler = Reassembler(SECRET, SESSION)
        self.t = 0.0
        self.channel: list[tuple[str, str]] = []  # (to "dev" | "stub", event) in flight, any order
        self.runs: Counter[str] = Counter()  # handler runs by request id, across restarts
        self.executed: ExecutedLog | None = None
        self.boot_dev()
        self.n = 0
        self.begin(timeout=5.0, large=False)

    def boot_dev(self) -> None:
        if self.executed is not None:
            self.executed.close()
        self.executed = ExecutedLog(self.dir / "executed.log", wall_ms(self.t))
        self.dev = DevServer(self.executed, ack_delay_s=self.ack_delay, heartbeat_s=self.heartbeat)

    def teardown(self) -> None:
        """However it went, the invocation under way ends once the time runs out, by its deadline."""
        try:
            if self.stub.outcome is None:
                self.tick(self.inv.deadline + 1.0 - self.t)
                assert self.stub.outcome is not None
                self.check_outcome()
        finally:
            if self.executed is not None:
                self.executed.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ the stub's shell
    def begin(self, timeout: float, large: bool) -> None:
        self.n += 1
        self.rid = f"req-{self.n}"
        body: dict[str, Any] = {"event": {"n": self.n, "pad": "x" * (3000 if large else 10)}}
        body["context"] = {"deadline_ms": wall_ms(self.t + timeout)}
        self.inv = Invocation(self.rid, body, self.t + timeout - 0.25, timeout)
        self.large = large
        self.ended_at: float | None = None
        self.publish(self.stub.start(self.inv, self.t), new_connection=False)

    def publish(self, message: Message | None, *, new_connection: bool) -> None:
        while message is not None:
            events = encoded(message, self.t, SMALL_EVENTS if self.large else None)
            assert (len(events) > 1) == self.large
            self.stub.publishing()
            self.channel.extend(("dev", e) for e in events)
            self.stub.published(self.t, events=len(events), new_connection=new_connection)
            message = self.stub.request_to_send()
        self.check_outcome()

    def to_stub(self, replies: list[Reply]) -> None:
        for reply in replies:
            assert reply.sandbox_id == SANDBOX
            message = Message(reply.kind, SESSION, reply.request_id, reply.sandbox_id, reply.body)
            self.channel.extend(("stub", e) for e in encoded(message, self.t))

    def check_outcome(self) -> None:
        outcome = self.stub.outcome
        if outcome is None or self.ended_at is not None:
            return
        self.ended_at = self.t
        assert self.t <= self.inv.deadline + EPS
        if isinstance(outcome, Answered):  # its own result, from its one run
            assert outcome.body == {"status": "ok", "response": self.rid}
            assert self.runs[self.rid] == 1

    # ------------------------------------------------------------------ time
    def tick(self, dt: float) -> None:
        """Time passes; each side is woken when it said, in time order."""
        end = self.t + dt
        while True:
            stub_due = self.stub.next_deadline()
            dev_due = self.dev.conv.next_deadline()
            due = min(stub_due, dev_due if dev_due is not None else float("inf"))
            if due > end:
                break
            self.t = max(self.t, due)
            if dev_due is not None and dev_due <= self.t:
                self.to_stub(self.dev.conv.wake(self.t))
            if stub_due <= self.t:
                self.stub.wake(self.t)
                self.publish(self.stub.request_to_send(), new_connection=False)
        self.t = end

    @rule(dt=st.floats(0.0, 2.0))
    def wait(self, dt: float) -> None:
        self.tick(dt)

    # ------------------------------------------------------------------ the channel
    @precondition(lambda self: self.channel)
    @rule(data=st.data(), keep_a_copy=st.integers(0, 4))
    def deliver(self, data: st.DataObject, keep_a_copy: int) -> None:
        """Any message in flight arrives (reordered); now and then a copy stays to arrive again."""
        i = data.draw(st.integers(0, len(self.channel) - 1))
        to, event = self.channel[i] if keep_a_copy == 0 else self.channel.pop(i)
        if to == "dev":
            self.to_stub(self.dev.feed(event, self.t, self.runs))
            return
        try:
            message = self.stub_reassembler.feed(event, wall_ms(self.t))
        except EnvelopeRejected:
            return  # a copy: the stub's shell logs it and reads on
        if message is not None:
            self.stub.receive(message, self.t)
            self.publish(self.stub.request_to_send(), new_connection=False)

    @precondition(lambda self: self.channel)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        self.channel.pop(data.draw(st.integers(0, len(self.channel) - 1)))

    # ------------------------------------------------------------------ the two ends
    @precondition(lambda self: self.dev.running)
    @rule(data=st.data())
    def handler_returns(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.dev.running)))
        reply = self.dev.finish(rid, self.t)
        assert reply is not None
        self.to_stub([reply])

    @rule()
    def stub_connection_drops(self) -> None:
        """The stub's socket dies while it waits: it asks again on a new connection."""
        if self.stub.outcome is None:
            self.stub.connection_lost(self.t)
            self.publish(self.stub.request_to_send(), new_connection=True)

    @rule()
    def dev_server_restarts(self) -> None:
        """`livelambda dev` is stopped (its runs die with it) and started again on the same app."""
        self.boot_dev()

    @precondition(lambda self: self.stub.outcome is not None)
    @rule(timeout=st.floats(0.3, 10.0), large=st.booleans())
    def next_invocation(self, timeout: float, large: bool) -> None:
        self.begin(timeout, large)

    # ------------------------------------------------------------------ always
    @invariant()
    def at_most_once(self) -> None:
        assert all(n <= 1 for n in self.runs.values()), self.runs

    @invariant()
    def ends_once_by_its_deadline(self) -> None:
        if self.stub.outcome is None:
            assert self.t <= self.inv.deadline + EPS
            assert self.stub.next_deadline() <= self.inv.deadline + EPS
        else:
            assert self.ended_at is not None and self.ended_at <= self.inv.deadline + EPS


TestLiveMachine = LiveMachine.TestCase
TestLiveMachine.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# ------------------------------------------------------------------ a channel that delivers


def simulate(
    *,
    runs_for: float,
    delay: float,
    timeout: float,
    dies_at: float | None = None,
    drops_at: float | None = None,
    silence: float = 5.0,
) -> tuple[Answered | Failed, float, Counter[str]]:
    """One invocation over a channel that delivers every message `delay` later, with a handler that
    runs `runs_for`; the dev server dies at `dies_at` (nothing in or out after); the stub's connection
    drops at `drops_at`, with what was on its way to the stub. The outcome, its time, the runs."""
    folder = Path(tempfile.mkdtemp(prefix="conv-sim-", dir=SCRATCH))
    executed = ExecutedLog(folder / "executed.log", EPOCH_MS)
    dev = DevServer(executed, ack_delay_s=lp.ACK_DELAY_S, heartbeat_s=lp.HEARTBEAT_INTERVAL_S)
    stub = StubConversation(SESSION, SANDBOX, ack_timeout_s=3.0, silence_timeout_s=silence)
    stub_reassembler = Reassembler(SECRET, SESSION)
    runs: Counter[str] = Counter()
    events: list[tuple[float, int, str, Any]] = []  # (when, order, what, payload)
    order = itertools.count()
    t = 0.0

    def later(when: float, what: str, payload: Any) -> None:
        heapq.heappush(events, (when, next(order), what, payload))

    def send_request(message: Message | None, new_connection: bool = False) -> None:
        while message is not None:
            copies = encoded(message, t)
            stub.publishing()
            for event in copies:
                later(t + delay, "to dev", event)
            stub.published(t, events=len(copies), new_connection=new_connection)
            message = stub.request_to_send()

    def to_stub(replies: list[Reply]) -> None:
        for reply in replies:
            message = Message(reply.kind, SESSION, reply.request_id, reply.sandbox_id, reply.body)
            for event in encoded(message, t):
                later(t + delay, "to stub", event)

    try:
        send_request(stub.start(Invocation("r1", {"context": {}}, timeout, timeout), t))
        if drops_at is not None:
            later(drops_at, "drop", None)
        while stub.outcome is None:
            alive = dies_at is None or t < dies_at
            dev_due = dev.conv.next_deadline() if alive else None
            candidates = [stub.next_deadline(), dev_due if dev_due is not None else float("inf")]
            if events:
                candidates.append(events[0][0])
            t = max(t, min(candidates))
            alive = dies_at is None or t < dies_at
            if events and events[0][0] <= t:
                _, _, what, payload = heapq.heappop(events)
                if what == "to stub":
                    message = stub_reassembler.feed(payload, wall_ms(t))
                    if message is not None:
                        stub.receive(message, t)
                        send_request(stub.request_to_send())
                elif alive and what == "to dev":
                    for reply in dev.feed(payload, t, runs):
                        to_stub([reply])
                    for rid in dev.running:
                        if not any(w == "finish" and p == rid for _, _, w, p in events):
                            later(t + runs_for, "finish", rid)
                elif what == "drop":  # what was on its way to the stub is lost with the connection
                    events[:] = [e for e in events if e[2] != "to stub"]
                    heapq.heapify(events)
                    stub.connection_lost(t)
                    send_request(stub.request_to_send(), new_connection=True)
                elif alive and what == "finish":
                    result = dev.finish(payload, t)
                    to_stub([result] if result is not None else [])
                continue
            if alive and dev_due is not None and dev_due <= t:
                to_stub(dev.conv.wake(t))
            if stub.next_deadline() <= t:
                stub.wake(t)
                send_request(stub.request_to_send())
        assert stub.outcome is not None
        return stub.outcome, t, runs
    finally:
        executed.close()
        shutil.rmtree(folder, ignore_errors=True)


@settings(max_examples=100, deadline=None)
@given(runs_for=st.floats(0.0, 120.0), delay=st.floats(0.0, 1.2))
def test_an_ack_and_heartbeats_keep_a_long_invocation_alive(runs_for: float, delay: float) -> None:
    """Minutes of handler, a second of delay each way (the heartbeat comes every 1 s, the silence
    timeout is 5 s; the ack must be back within the 3 s ack timeout): the caller gets the result, from
    one run."""
    outcome, t, runs = simulate(runs_for=runs_for, delay=delay, timeout=runs_for + 4 * delay + 5.0)
    assert isinstance(outcome, Answered) and outcome.body == {"status": "ok", "response": "r1"}
    assert runs == {"r1": 1}
    assert t <= runs_for + 2 * delay + 1e-6


@settings(max_examples=100, deadline=None)
@given(dies_after=st.floats(0.5, 30.0), delay=st.floats(0.0, 0.5), silence=st.floats(2.0, 8.0))
def test_a_dev_server_that_dies_mid_run_ends_it_with_dev_server_lost(
    dies_after: float, delay: float, silence: float
) -> None:
    dies_at = lp.ACK_DELAY_S + delay + dies_after
    outcome, t, runs = simulate(runs_for=600.0, delay=delay, timeout=900.0, dies_at=dies_at, silence=silence)
    assert isinstance(outcome, Failed) and isinstance(outcome.error, DevServerLost), outcome
    assert runs == {"r1": 1}
    # The last beat left within a heartbeat interval before it died, and arrived `delay` later: the
    # silence counts from there.
    assert dies_at + delay + silence - lp.HEARTBEAT_INTERVAL_S - EPS <= t <= dies_at + delay + silence + EPS


@settings(max_examples=100, deadline=None)
@given(runs_for=st.floats(0.0, 20.0), delay=st.floats(0.0, 1.2), drops=st.floats(0.0, 1.0))
def test_a_result_lost_with_the_stubs_connection_comes_back_when_it_asks_again(
    runs_for: float, delay: float, drops: float
) -> None:
    """The stub's connection drops at any moment of the run, the result on its way with it: the
    request goes out again on the new connection, and the dev server answers it with the result it
    has, from the one run."""
    drops_at = drops * (runs_for + 2 * delay + lp.ACK_DELAY_S)
    outcome, _, runs = simulate(runs_for=runs_for, delay=delay, timeout=runs_for + 20.0, drops_at=drops_at)
    assert isinstance(outcome, Answered) and outcome.body == {"status": "ok", "response": "r1"}, outcome
    assert runs == {"r1": 1}
