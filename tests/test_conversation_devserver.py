"""The dev server's half of the live conversation (devserver/live/conversation.py), without I/O: any
sequence of invokes (new, redelivered, asked again from another sandbox, expired, of another kind),
results (published by the shell at once, or by the conversation), waits and restarts of the dev
server, on a simulated clock, with the on-disk executed log as its memory across restarts.

Proved: a request id is handed to a handler at most once, across restarts; a redelivery is
acknowledged again and answered with the result once there is one; expired and replayed ones are
refused, counted and answered with `reject`; a run that outlasts the ack delay is acknowledged, then
gets a heartbeat every interval until its result, and nothing after it; `next_deadline()` says when.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from devserver.live.conversation import DevServerConversation, Refused, Reply, Request, Run
from devserver.live.executed import ExecutedLog
from stub_runtime import live_protocol as lp
from stub_runtime.envelope import Message
from stub_runtime.errors import LocalProtocolError

EPOCH_MS = 1_700_000_000_000
# The executed log writes and renames a file per restart: in memory when the machine has a tmpfs.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
IDS = [f"req-{i}" for i in range(5)]
EPS = 1e-9


def wall_ms(t: float) -> float:
    return EPOCH_MS + t * 1000


def invoke(rid: str, sandbox: str, deadline_ms: int | None, body: Any = None) -> Message:
    if body is None:
        context = {} if deadline_ms is None else {"deadline_ms": deadline_ms}
        body = {"event": {"rid": rid}, "context": context, "function": "echo"}
    return Message(lp.INVOKE, "s1", rid, sandbox, body, ts_ms=EPOCH_MS)


class DevServerMachine(RuleBasedStateMachine):
    @initialize(ack_delay=st.floats(0.0, 1.0), interval=st.floats(0.01, 2.0), remembered=st.booleans())
    def setup(self, ack_delay: float, interval: float, remembered: bool) -> None:
        self.ack_delay, self.interval = ack_delay, interval
        self.dir = Path(tempfile.mkdtemp(prefix="conv-dev-", dir=SCRATCH))
        self.remembered = remembered  # with the executed log (as `livelambda dev`), or without
        self.t = 0.0
        self.runs: Counter[str] = Counter()  # handler runs by request id, across restarts
        self.restarts = 0
        self.boot()

    def boot(self) -> None:
        executed = ExecutedLog(self.dir / "executed.log", int(wall_ms(self.t))) if self.remembered else None
        self.conv = DevServerConversation(
            ack_delay_s=self.ack_delay, heartbeat_interval_s=self.interval, executed=executed
        )
        self.running: dict[str, Request] = {}  # this process's runs not finished yet
        self.results: dict[str, dict[str, Any]] = {}  # this process's published results
        self.started: dict[str, float] = {}
        self.beats: dict[str, list[tuple[float, str]]] = {}  # the acks and heartbeats sent, per id
        self.seen_here: set[str] = set()  # ids this process accepted (ran)

    def teardown(self) -> None:
        if self.conv.executed is not None:
            self.conv.executed.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ inputs
    @rule(
        rid=st.sampled_from(IDS),
        sandbox=st.sampled_from(["sb-a", "sb-b"]),
        deadline=st.sampled_from(["future", "future", "future", "passed", "none"]),
        body=st.sampled_from([None, None, None, [1], "junk"]),
    )
    def receive(self, rid: str, sandbox: str, deadline: str, body: Any) -> None:
        now_ms = wall_ms(self.t)
        deadline_ms = {"future": int(now_ms) + 60_000, "passed": int(now_ms) - 5, "none": None}[deadline]
        actions = self.conv.receive(invoke(rid, sandbox, deadline_ms, body), self.t, now_ms)
        runs = [a for a in actions if isinstance(a, Run)]
        replies = [a for a in actions if isinstance(a, Reply)]
        refused = [a for a in actions if isinstance(a, Refused)]
        assert all(r.sandbox_id == sandbox and r.request_id == rid for r in replies)
        if rid in self.seen_here:  # delivered again, or asked again: never run again
            assert not runs and not refused
            kinds = [(r.kind, r.body) for r in replies]
            expected = [(lp.ACK, {"duplicate": True})]
            if rid in self.results:
                expected.append((lp.RESULT, self.results[rid]))
            assert kinds == expected
            return
        if deadline == "passed" and isinstance(body, type(None)):
            assert not runs and [r.reason for r in refused] == ["expired"]
            assert [r.kind for r in replies] == [lp.REJECT] and "after its deadline" in replies[0].body[
                "message"
            ]
            return
        if self.remembered and self.runs[rid]:  # run by this app's dev server before it restarted
            assert not runs and [r.reason for r in refused] == ["replay"]
            assert [r.kind for r in replies] == [lp.REJECT] and "restarted" in replies[0].body["message"]
            return
        assert len(runs) == 1 and not replies and not refused
        run = runs[0]
        assert run.invocation.request_id == rid and run.invocation.sandbox_id == sandbox
        assert run.invocation.received_ms == now_ms
        if body is None:
            assert run.invocation.event == {"rid": rid} and run.invocation.function == "echo"
        self.runs[rid] += 1
        self.seen_here.add(rid)
        self.running[rid] = run.request
        self.started[rid] = self.t
        self.beats[rid] = []

    @rule(kind=st.sampled_from([lp.ACK, lp.RESULT, lp.HEARTBEAT, "hello"]), rid=st.sampled_from(IDS))
    def receive_another_kind(self, kind: str, rid: str) -> None:
        message = Message(kind, "s1", rid, "sb-a", {}, ts_ms=EPOCH_MS)
        actions = self.conv.receive(message, self.t, wall_ms(self.t))
        assert (
            len(actions) == 1 and isinstance(actions[0], Refused) and actions[0].reason == "unexpected_kind"
        )

    @precondition(lambda self: self.running)
    @rule(data=st.data(), early=st.booleans())
    def finish(self, data: st.DataObject, early: bool) -> None:
        """A run ends; its result goes out now from the runtime's answer (`early`), or from here."""
        rid = data.draw(st.sampled_from(sorted(self.running)))
        request = self.running.pop(rid)
        result = {"status": "ok", "response": rid}
        if early:  # what Bridge.answer() does
            request.result = result
            request.stop_keepalive()
            assert self.conv.finished(request, {"status": "ok", "response": "again"}, self.t) is None
        else:
            reply = self.conv.finished(request, result, self.t)
            assert reply is not None and (reply.kind, reply.request_id, reply.body) == (
                lp.RESULT,
                rid,
                result,
            )
            assert reply.sandbox_id == request.sandbox_id
        self.results[rid] = result

    @rule(dt=st.floats(0.0, 3.0))
    def wait(self, dt: float) -> None:
        """Time passes; the shell wakes the conversation whenever it said (and at the end)."""
        end = self.t + dt
        while True:
            due = self.conv.next_deadline()
            if due is None or due > end:
                break
            self.t = max(self.t, due)
            self.wake()
        self.t = end
        self.wake()

    def wake(self) -> None:
        for reply in self.conv.wake(self.t):
            rid = reply.request_id
            assert rid in self.running, "a beat for a request that is not running"
            assert reply.sandbox_id == self.running[rid].sandbox_id
            sent = self.beats[rid]
            assert reply.kind == (lp.HEARTBEAT if sent else lp.ACK)
            if sent:
                assert self.t >= sent[-1][0] + self.interval - EPS
            else:
                assert self.t >= self.started[rid] + self.ack_delay - EPS
            sent.append((self.t, reply.kind))

    @rule()
    def restart(self) -> None:
        """`livelambda dev` stops (its runs die with it) and starts again on the same app."""
        if self.conv.executed is not None:
            self.conv.executed.close()
        self.restarts += 1
        self.boot()

    # ------------------------------------------------------------------ always
    @invariant()
    def at_most_once(self) -> None:
        if self.remembered:
            assert all(n <= 1 for n in self.runs.values()), self.runs

    @invariant()
    def beats_are_due_while_running_only(self) -> None:
        due = self.conv.next_deadline()
        if not self.running:
            assert due is None
            return
        assert due is not None
        for rid in self.running:  # each running request's next beat is due by then, not later
            sent = self.beats[rid]
            next_beat = sent[-1][0] + self.interval if sent else self.started[rid] + self.ack_delay
            assert due <= next_beat + EPS


TestDevServerMachine = DevServerMachine.TestCase
TestDevServerMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_without_a_memory_a_restart_forgets() -> None:
    """Without the executed log (tests, replays), a new process knows nothing of the old one's runs."""
    first, second = DevServerConversation(), DevServerConversation()
    message = invoke("r", "sb", None)
    assert isinstance(first.receive(message, 0.0, EPOCH_MS)[0], Run)
    assert isinstance(second.receive(message, 0.0, EPOCH_MS)[0], Run)


def test_the_oldest_ids_are_forgotten_past_the_limit() -> None:
    conv = DevServerConversation(remember=3)
    for i in range(5):
        conv.receive(invoke(f"r{i}", "sb", None), 0.0, EPOCH_MS)
    assert list(conv.requests) == ["r2", "r3", "r4"]


def test_a_run_that_ends_before_the_ack_delay_is_never_acknowledged() -> None:
    conv = DevServerConversation(ack_delay_s=0.15, heartbeat_interval_s=1.0)
    (run,) = conv.receive(invoke("r", "sb", None), 10.0, EPOCH_MS)
    assert isinstance(run, Run) and conv.next_deadline() == pytest.approx(10.15)
    reply = conv.finished(run.request, {"status": "ok"}, 10.1)
    assert reply is not None and reply.kind == lp.RESULT
    assert conv.next_deadline() is None and conv.wake(11.0) == []


def test_a_bad_interval_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        DevServerConversation(heartbeat_interval_s=0)
