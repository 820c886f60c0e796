"""The stub's half of the live conversation, sans-I/O: one invocation at a time, from the `invoke` it
publishes to the one outcome it ends with. No sockets and no clock: the shell (`Sandbox.invoke`,
blocking) feeds in what happened and the time (`now`, its monotonic clock), and reads out what to
publish, when to wake, and the outcome. Messages go in and out as `envelope.Message`s: the shell
encodes and reassembles them, so nothing here parses or copies a byte.

    message = conv.start(invocation, now())           # the `invoke` to publish
    while conv.outcome is None:
        if message is not None:                       # publish it:
            conv.publishing()                         #   from here the dev server may have it
            ...                                       #   (a ConnectionLost while writing: once more)
            conv.published(now(), events=n, new_connection=...)
        try:
            item = read_until(conv.next_deadline())   # the next message, or None at that time
        except ConnectionLost:
            conv.connection_lost(now())               # the request goes out again, on a new one
        else:
            conv.receive(item, now()) if item is not None else conv.wake(now())
        message = conv.request_to_send()
    # an error of the shell's own (connecting, publishing): raise conv.failed(exc)

What it decides, and why (the timings are StubSettings'):
- Until the dev server acknowledges (`ack`, or a `heartbeat`), the request is asked again every
  quarter of the ack timeout: a dev server that was reconnecting when the first copy went out gets
  the next one (it runs each request id at most once). Only a one-event request: a large one may
  still be in transit, and sending its megabytes again would only add to the queue.
- No ack within the ack timeout: `DevServerNotRunning`. A copy that went out on a new connection
  gets a whole ack timeout of its own: an ack sent to the old connection is lost with it, and an
  AppSync blip is no sign that the dev server is not running.
- Once acknowledged, each message resets the silence timer; `silence_timeout_s` without one:
  `DevServerLost`. Heartbeats (every `live_protocol.HEARTBEAT_INTERVAL_S`) keep a long run alive.
- A lost connection (under any state): the request goes out again with a fresh message id on the
  next connection; the dev server answers a request id it has seen with an ack, and with the result
  when it has one (a result published to the old connection is lost with it).
- `result` ends it with the dev server's body; `reject` (signed like every message: only a dev
  server holding the session's secret can refuse) ends it at once with `Rejected`.
- The function's deadline (the shell's, a margin before Lambda's own) ends it with
  `DeadlineExceeded` once acknowledged, `DevServerNotRunning` before.
- Every error after the request may have left says so (`outcomes.after_sending`).

Bounds (tests/test_conversation_stub.py proves them): `next_deadline()` is never after the
invocation's deadline, so a shell that wakes when told ends every invocation exactly once, by then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from stub_runtime import live_protocol as lp
from stub_runtime.envelope import Message
from stub_runtime.errors import LivelambdaError, RemoteProtocolError
from stub_runtime.outcomes import (
    DeadlineExceeded,
    DevServerLost,
    DevServerNotRunning,
    Rejected,
    after_sending,
)

__all__ = ["Answered", "Failed", "Invocation", "Outcome", "StubConversation"]


@dataclass(frozen=True)
class Invocation:
    request_id: str
    body: dict[str, Any]  # the `invoke` message's body: event, context (hello, function)
    deadline: float  # the outcome is due by then (the shell's clock), a margin before Lambda's
    timeout_s: float  # the function's time left when it began: what DeadlineExceeded says


@dataclass(frozen=True)
class Answered:
    """The dev server's result: `body["status"]` is "ok" (with `response`) or names the error."""

    body: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """A livelambda error ends the invocation (worded for a request that may have run)."""

    error: LivelambdaError


Outcome = Answered | Failed

# The conversation's states: nothing asked yet, asked (no ack), acknowledged, ended.
_IDLE, _ASKING, _ACKED, _DONE = "idle", "asking", "acked", "done"


class StubConversation:
    """One sandbox's conversations with the dev server, one invocation at a time (Lambda's way)."""

    def __init__(
        self, session: str, sandbox_id: str, *, ack_timeout_s: float, silence_timeout_s: float
    ) -> None:
        self.session = session
        self.sandbox_id = sandbox_id
        self.ack_timeout_s = ack_timeout_s
        self.silence_timeout_s = silence_timeout_s
        self.state = _IDLE
        self.outcome: Outcome | None = None
        self.handed_over = False  # the request may have reached the dev server
        self._invocation: Invocation | None = None
        self._started = 0.0
        self._sent = False  # published once: the ack timer runs
        self._ask = False  # a copy of the request is due
        self._ack_by = math.inf
        self._resend_every = math.inf
        self._resend_at = math.inf
        self._last_heard = 0.0

    # ------------------------------------------------------------------ events in
    def start(self, invocation: Invocation, now: float) -> Message:
        """Begin `invocation` (whatever came before is over: Lambda runs one at a time); the `invoke`
        to publish."""
        self._invocation = invocation
        self.state = _ASKING
        self.outcome = None
        self.handed_over = self._sent = self._ask = False
        self._started = self._last_heard = now
        self._ack_by = self._resend_every = self._resend_at = math.inf
        return self._request()

    def publishing(self) -> None:
        """The shell is writing the request: from now on the dev server may receive it."""
        self.handed_over = True

    def published(self, now: float, *, events: int, new_connection: bool) -> None:
        """The request went out in `events` AppSync events, on a connection made for it or not."""
        self.handed_over = True
        if self.state == _DONE:
            return
        if not self._sent:  # the first copy: the clocks start now
            self._sent = True
            self._ack_by = now + self.ack_timeout_s
            self._resend_every = self.ack_timeout_s / 4 if events == 1 else math.inf
            self._last_heard = now
        elif new_connection:  # an ack sent to the old connection is lost with it
            self._ack_by = max(self._ack_by, now + self.ack_timeout_s)
        self._resend_at = now + self._resend_every

    def receive(self, message: Message, now: float) -> None:
        """A message from the dev server (any invocation's: others' are ignored)."""
        invocation = self._invocation
        if (
            self.state in (_IDLE, _DONE)
            or invocation is None
            or message.invocation_id != invocation.request_id
            or message.sandbox_id != self.sandbox_id
        ):
            return
        self._last_heard = now
        kind = message.kind
        if kind in (lp.ACK, lp.HEARTBEAT):
            self.state = _ACKED
        elif kind == lp.RESULT:
            body = message.body
            if isinstance(body, dict) and "status" in body:
                self._end(Answered(body))
            else:
                self._fail(
                    RemoteProtocolError(f"the dev server sent a result without a status: {body!r:.200}")
                )
        elif kind == lp.REJECT:
            body = message.body if isinstance(message.body, dict) else {}
            self._fail(Rejected(str(body.get("message") or "the dev server refused the invocation")))

    def connection_lost(self, now: float) -> None:
        """The connection died while waiting: the request goes out again on the next one."""
        if self.state in (_ASKING, _ACKED):
            self._ask = True

    def wake(self, now: float) -> None:
        """The shell waited until `next_deadline()` (or about then): ask again or end, as due."""
        invocation = self._invocation
        if invocation is None or self.state in (_IDLE, _DONE):
            return
        if self.state == _ASKING:
            if now >= self._ack_by or now >= invocation.deadline:
                self._fail(DevServerNotRunning(self.session, now - self._started))
            elif now >= self._resend_at:
                self._ask = True
                self._resend_at = math.inf  # until this copy is published
        elif now >= invocation.deadline:
            self._fail(DeadlineExceeded(invocation.request_id, invocation.timeout_s))
        elif now >= self._last_heard + self.silence_timeout_s:
            self._fail(DevServerLost(invocation.request_id, self.silence_timeout_s))

    def failed(self, error: LivelambdaError) -> LivelambdaError:
        """The shell's own error (connecting, publishing) ends the invocation: the error to raise."""
        self._fail(error)
        outcome = self.outcome
        return outcome.error if isinstance(outcome, Failed) else error

    # ------------------------------------------------------------------ what to do
    def request_to_send(self) -> Message | None:
        """The request again (a fresh message id: the dev server's replay check is per message), when
        a copy is due; else None."""
        if not self._ask or self.state in (_IDLE, _DONE):
            return None
        self._ask = False
        return self._request()

    def next_deadline(self) -> float:
        """When the shell must wake (call `wake`) if nothing arrives before: never after the
        invocation's deadline."""
        invocation = self._invocation
        if invocation is None or self.state in (_IDLE, _DONE):
            return math.inf
        if self.state == _ASKING:
            return min(invocation.deadline, self._ack_by, self._resend_at)
        return min(invocation.deadline, self._last_heard + self.silence_timeout_s)

    # ------------------------------------------------------------------ inside
    def _request(self) -> Message:
        invocation = self._invocation
        assert invocation is not None
        return Message(lp.INVOKE, self.session, invocation.request_id, self.sandbox_id, invocation.body)

    def _fail(self, error: LivelambdaError) -> None:
        self._end(Failed(after_sending(error) if self.handed_over else error))

    def _end(self, outcome: Outcome) -> None:
        if self.state != _DONE:  # ends once: the first outcome stands
            self.state = _DONE
            self.outcome = outcome
            self._ask = False
