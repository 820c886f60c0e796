"""The dev server's half of the live conversation, sans-I/O: for each request id, whether its handler
runs, what to answer, and when to acknowledge and send heartbeats. No sockets, no asyncio, no clock:
the shell (`devserver.live.bridge.Bridge`) feeds in each complete message (after the Reassembler: nothing
here parses or copies a byte), the time and the runner's results, carries out the actions it gets back,
and wakes it at `next_deadline()`:

    for action in conv.receive(message, now, wall_ms):   # Run | Reply | Refused
        ...                                              # run the handler, publish, count
    reply = conv.finished(run.request, result, now)      # the result to publish (None: it is out)
    for reply in conv.wake(now): ...                     # the acks and heartbeats due
    conv.next_deadline()                                 # when to wake next (None: nothing running)

`now` is the shell's monotonic clock (seconds); `wall_ms` the wall clock, which invocations' deadlines
and the executed log are written in.

What it decides, and why:
- A request id runs at most once. A new `invoke` runs unless refused; another one with the same id (a
  redelivery, or the stub asking again after a reconnect) is acknowledged again, `{"duplicate": true}`,
  and answered with the result once there is one: the stub may have lost the first with its
  connection. The last `remember` ids are kept for that.
- Refused, counted, and answered with `reject`, so that the stub ends at once with `Rejected` rather
  than at its ack timeout (the reject is signed like every message: the stub trusts only our
  session's): an invocation whose deadline has passed (`expired`), and one that this app's dev
  server ran before it restarted (`replay`: `executed`, devserver/live/executed.py, remembers on disk;
  each request is recorded there before it runs).
- A signed message of another kind than `invoke` on the request channel is refused
  (`unexpected_kind`), and not answered.
- A run that outlasts `ack_delay_s` is acknowledged, then gets a heartbeat every
  `heartbeat_interval_s` until its result (a result within `ack_delay_s` goes alone: an ack first
  would cost the round trip ~1 ms). The stub takes silence as the dev server lost.

tests/test_conversation_devserver.py and tests/test_conversation_live.py (both halves over a channel
that duplicates, loses and reorders, and a dev server that restarts) prove these.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from devserver.live.executed import ExecutedLog
from stub_runtime import live_protocol as lp
from stub_runtime.envelope import Message
from stub_runtime.errors import LocalProtocolError

__all__ = ["Action", "DevServerConversation", "LiveInvocation", "Refused", "Reply", "Request", "Run"]

# How many request ids are remembered to answer redeliveries.
REMEMBER = 2048
# Accepted clock skew of an envelope (the Reassembler's): an executed id is kept this long past its
# invocation's deadline, after which an envelope carrying it is refused as expired or stale anyway.
MAX_SKEW_MS = 5 * 60_000


@dataclass
class LiveInvocation:
    """An invocation as it arrived from a sandbox."""

    request_id: str
    sandbox_id: str
    event: Any
    context: dict[str, Any]
    hello: dict[str, Any] | None
    function: str | None  # the local function `aws up` matched the deployed one to, when it said
    sent_ms: int  # the stub's clock when it published
    received_ms: float  # this machine's wall clock when the message was complete


class Request:
    """One request id as the dev server knows it."""

    __slots__ = ("acked", "request_id", "result", "running", "sandbox_id")

    def __init__(self, request_id: str, sandbox_id: str) -> None:
        self.request_id = request_id
        self.sandbox_id = sandbox_id  # where its replies go (the latest sandbox to ask)
        self.result: dict[str, Any] | None = None  # set once published (or being published)
        self.running = True  # acks and heartbeats are due while it runs
        self.acked = False

    def stop_keepalive(self) -> None:
        """No more acks or heartbeats: its result is out (or its run was abandoned)."""
        self.running = False


@dataclass(frozen=True, slots=True)
class Run:
    """Run the handler (once: the only Run this request id gets)."""

    invocation: LiveInvocation
    request: Request


@dataclass(frozen=True, slots=True)
class Reply:
    """Publish a message on a sandbox's response channel."""

    sandbox_id: str
    request_id: str
    kind: str
    body: Any


@dataclass(frozen=True, slots=True)
class Refused:
    """A message that must not run: count it (`reason`: one of envelope.REJECT_REASONS or
    "unexpected_kind") and say why."""

    request_id: str
    reason: str
    detail: str


Action = Run | Reply | Refused


class DevServerConversation:
    """All the live requests of one dev server, by request id."""

    def __init__(
        self,
        *,
        ack_delay_s: float = lp.ACK_DELAY_S,
        heartbeat_interval_s: float = lp.HEARTBEAT_INTERVAL_S,
        executed: ExecutedLog | None = None,
        max_skew_ms: int = MAX_SKEW_MS,
        remember: int = REMEMBER,
    ) -> None:
        if not heartbeat_interval_s > 0 or not ack_delay_s >= 0:
            raise LocalProtocolError("the heartbeat interval must be > 0 and the ack delay >= 0")
        self.ack_delay_s = ack_delay_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.executed = executed  # request ids run before, across restarts (None: this process only)
        self.max_skew_ms = max_skew_ms
        self.remember = remember
        self.requests: OrderedDict[str, Request] = OrderedDict()
        self.duplicates_answered = 0
        # (when, tie-breaker, request): the next ack or heartbeat of each running request
        self._beats: list[tuple[float, int, Request]] = []
        self._order = itertools.count()

    # ------------------------------------------------------------------ events in
    def receive(self, message: Message, now: float, wall_ms: float) -> list[Action]:
        """A complete, authentic message from the request channel, at `now` (and `wall_ms`)."""
        rid, sandbox = message.invocation_id, message.sandbox_id
        if message.kind != lp.INVOKE:  # signed, but nothing a stub sends here
            detail = f"a {message.kind!r} message on the request channel, where only {lp.INVOKE!r} belongs"
            return [Refused(rid, "unexpected_kind", detail)]
        request = self.requests.get(rid)
        if request is not None:  # delivered twice, or asked again: never run again
            self.duplicates_answered += 1
            request.sandbox_id = sandbox
            ack = Reply(sandbox, rid, lp.ACK, {"duplicate": True})
            if request.result is None:
                return [ack]
            return [ack, Reply(sandbox, rid, lp.RESULT, request.result)]
        body = message.body if isinstance(message.body, dict) else {}
        refused = self._refusal(rid, body, int(wall_ms))
        if refused is not None:
            reason, detail, why = refused
            return [Refused(rid, reason, detail), Reply(sandbox, rid, lp.REJECT, {"message": why})]
        request = self.requests[rid] = Request(rid, sandbox)
        while len(self.requests) > self.remember:
            self.requests.popitem(last=False)
        heapq.heappush(self._beats, (now + self.ack_delay_s, next(self._order), request))
        function = body.get("function")
        invocation = LiveInvocation(
            request_id=rid,
            sandbox_id=sandbox,
            event=body.get("event"),
            context=body.get("context") or {},
            hello=body.get("hello"),
            function=function if isinstance(function, str) else None,
            sent_ms=message.ts_ms,
            received_ms=wall_ms,
        )
        return [Run(invocation, request)]

    def finished(self, request: Request, result: dict[str, Any], now: float) -> Reply | None:
        """The run of `request` ended with `result` (the body the stub expects): the reply carrying it,
        or None when it went out already (the shell published it the moment the runtime answered)."""
        request.stop_keepalive()
        if request.result is not None:
            return None
        request.result = result
        return Reply(request.sandbox_id, request.request_id, lp.RESULT, result)

    def wake(self, now: float) -> list[Reply]:
        """The acks and heartbeats due by `now`."""
        beats, replies = self._beats, []
        while beats and beats[0][0] <= now:
            request = heapq.heappop(beats)[2]
            if not request.running:
                continue
            kind = lp.HEARTBEAT if request.acked else lp.ACK
            request.acked = True
            replies.append(Reply(request.sandbox_id, request.request_id, kind, {}))
            heapq.heappush(beats, (now + self.heartbeat_interval_s, next(self._order), request))
        return replies

    # ------------------------------------------------------------------ what to do
    def next_deadline(self) -> float | None:
        """When the next ack or heartbeat is due (call `wake` then); None while nothing runs."""
        beats = self._beats
        while beats and not beats[0][2].running:  # finished since: forget them here
            heapq.heappop(beats)
        return beats[0][0] if beats else None

    # ------------------------------------------------------------------ inside
    def _refusal(self, rid: str, body: dict[str, Any], now_ms: int) -> tuple[str, str, str] | None:
        """(reason, detail, what the stub is told) when this invocation must not run; None when it may,
        and then it is recorded as run before it runs."""
        context = body.get("context")
        deadline_ms = context.get("deadline_ms") if isinstance(context, dict) else None
        if not isinstance(deadline_ms, int):
            deadline_ms = 0
        if deadline_ms and deadline_ms <= now_ms:
            late = now_ms - deadline_ms
            return (
                "expired",
                f"invocation {rid} arrived {late} ms after its deadline; not run",
                f"it reached the dev server {late} ms after its deadline; it was not run",
            )
        if self.executed is None:
            return None
        if rid in self.executed:
            return (
                "replay",
                f"invocation {rid} was run by this app's dev server before it restarted; not run again",
                "the dev server had received this invocation before it restarted, so the handler may "
                "have run there; it is not run twice",
            )
        self.executed.record(rid, (deadline_ms or now_ms) + self.max_skew_ms, now_ms)
        return None
