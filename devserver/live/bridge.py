"""The dev server's side of the live channel, the asyncio shell of the conversation: one persistent
AppSync connection, subscribed to the session's request channel. Each message is authenticated and
reassembled (envelope.Reassembler), then handed to the dev server's half of the conversation
(devserver/live/conversation.py), which decides what runs, what is answered and when the acks and
heartbeats are due; this module carries that out: runs the handlers, publishes on the sandboxes'
response channels, counts and says the refusals, and keeps one timer for the conversation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from devserver.live.conversation import DevServerConversation, LiveInvocation, Refused, Reply, Request, Run
from devserver.live.executed import ExecutedLog
from devserver.live.rejections import RejectionSummary
from devserver.runtime.logs import without_error_report
from devserver.status import ConnectionStatus, Rejection
from stub_runtime import live_protocol as lp
from stub_runtime.appsync.auth import ApiKeyAuth, IamAuth
from stub_runtime.appsync.client import AppSyncEventsClient, PublishResult
from stub_runtime.appsync.reconnecting import ConnectionState, ReconnectingClient
from stub_runtime.envelope import EnvelopeRejected, Message, Reassembler, encode
from stub_runtime.errors import DevServerFault, LivelambdaError
from stub_runtime.reconnect import PolicyConfig, ReconnectPolicy

log = logging.getLogger("livelambda.bridge")

# The dev server's reconnect policy: persistent (it never gives up), each wait at most max_delay_s.
# 1 s, as the stub's: the dev server is back within ~1 s of AppSync, and the stubs' re-asks (every
# 0.75 s) reach it, so invocations recover within 2 s after a blip (tests/test_chaos.py). A 10 s cap
# left it off for up to 10 s after every blip. One dev server at <= 2 dials a second (1.5 expected)
# while AppSync is unreachable is no storm.
DEV_SERVER_POLICY = PolicyConfig(mode="persistent", max_delay_s=1.0)


@dataclass(frozen=True)
class Endpoint:
    http_url: str
    realtime_url: str
    auth: str  # "api_key" | "iam"
    api_key: str | None
    region: str
    namespace: str = lp.NAMESPACE

    def make_auth(self) -> Any:
        host = urlsplit(self.http_url).netloc
        if self.auth == "iam":
            return IamAuth(host, self.region)
        return ApiKeyAuth(self.api_key or "", host)


# Runs one invocation and returns the result body the stub expects: {"status": "ok", "response": ...}
# or {"status": ..., "error": {"errorType", "errorMessage", "stackTrace"}}.
Executor = Callable[[LiveInvocation], Awaitable[dict[str, Any]]]


class Bridge:
    def __init__(
        self,
        endpoint: Endpoint,
        session: str,
        secret: bytes,
        execute: Executor,
        *,
        policy: PolicyConfig | None = None,
        heartbeat_interval_s: float = lp.HEARTBEAT_INTERVAL_S,
        ack_delay_s: float = lp.ACK_DELAY_S,
        on_state: Callable[[ConnectionState], Any] | None = None,
        on_published: Callable[[str, float], Any] | None = None,
        executed: ExecutedLog | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.rejections = RejectionSummary()
        self._summary_timer: asyncio.TimerHandle | None = None
        self.session = session
        self.secret = secret
        self._execute = execute
        self._on_state = on_state
        self._on_published = on_published
        auth = endpoint.make_auth()
        self.connection = ReconnectingClient(
            lambda: AppSyncEventsClient(endpoint.http_url, endpoint.realtime_url, auth),
            ReconnectPolicy(policy or DEV_SERVER_POLICY),
        )
        self.reassembler = Reassembler(secret, session)
        self.conversation = DevServerConversation(
            ack_delay_s=ack_delay_s,
            heartbeat_interval_s=heartbeat_interval_s,
            executed=executed,
            max_skew_ms=self.reassembler.max_skew_ms,
        )
        # One timer wakes the conversation for its acks and heartbeats (not a task per invocation:
        # most invocations end before their ack is due).
        self._wake_timer: asyncio.TimerHandle | None = None
        self._wake_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.state_since = time.time()
        self.last_frame_at: float | None = None

    @property
    def executed(self) -> ExecutedLog | None:
        """Invocations run before, across restarts (None: this process only)."""
        return self.conversation.executed

    @property
    def duplicates_answered(self) -> int:
        return self.conversation.duplicates_answered

    @property
    def _entries(self) -> dict[str, Request]:
        """The requests by id (what `answer()` publishes for)."""
        return self.conversation.requests

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Keep the connection until `close()`."""
        channel = lp.request_channel(self.session, self.endpoint.namespace)
        await self.connection.run([channel], self._on_event, on_state=self._state)

    async def close(self) -> None:
        if self._wake_timer is not None:
            self._wake_timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.connection.close()

    def _state(self, state: ConnectionState) -> None:
        self.state_since = time.time()
        if self._on_state is not None:
            self._on_state(state)

    # ------------------------------------------------------------------ receiving
    def _on_event(self, channel: str, event: Any) -> None:
        now = time.time()
        self.last_frame_at = now
        try:
            message = self.reassembler.feed(event, int(now * 1000))
        except EnvelopeRejected as exc:
            self._say_rejected(exc.reason, f"on {channel}: {exc}")
            return
        if message is None:
            return
        for action in self.conversation.receive(message, time.monotonic(), now * 1000):
            if isinstance(action, Run):
                self._spawn(self._handle(action))
            elif isinstance(action, Reply):
                self._spawn(self._reply(action))
            else:
                self._refused(action, int(now * 1000))
        self._rearm()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _say_rejected(self, reason: str, detail: str) -> None:
        """One line for the first of each reason, then a summary now and then (see rejections.py)."""
        now = time.monotonic()
        line = self.rejections.rejected(reason, detail, now)
        if line is not None:
            log.warning("%s", line)
        if self.rejections.pending and self._summary_timer is None:
            delay = max(0.0, self.rejections.due_at() - now)
            self._summary_timer = asyncio.get_running_loop().call_later(delay, self._flush_rejections)

    def _flush_rejections(self) -> None:
        self._summary_timer = None
        line = self.rejections.flush(time.monotonic())
        if line is not None:
            log.warning("%s", line)

    def _refused(self, refused: Refused, now_ms: int) -> None:
        """Counted with the Reassembler's rejections (one tally of what was dropped and why), and said."""
        self.reassembler.count_rejection(now_ms, refused.reason, refused.detail)
        self._say_rejected(refused.reason, refused.detail)

    async def _handle(self, run: Run) -> None:
        """Run the handler, then publish its result (unless `answer()` did as the runtime answered)."""
        rid = run.invocation.request_id
        try:
            result = await self._execute(run.invocation)
        except Exception as exc:  # the runner failed: the stub still gets an answer, typed as ours
            log.exception("running %s failed", rid)
            error_type = exc.error_type if isinstance(exc, LivelambdaError) else DevServerFault.error_type
            result = livelambda_error(error_type, f"the dev server could not run the invocation: {exc}")
        except asyncio.CancelledError:  # closing: no more heartbeats for it
            run.request.stop_keepalive()
            raise
        reply = self.conversation.finished(run.request, result, time.monotonic())
        if reply is None:
            return  # published by answer() as the runtime answered
        published_ms = time.time() * 1000  # handed to AppSync (the ack comes later)
        await self._reply(reply)
        if self._on_published is not None:
            self._on_published(rid, published_ms)

    def _rearm(self) -> None:
        """Wake the conversation when it next needs to (sooner than the timer set, if it does)."""
        at = self.conversation.next_deadline()
        if at is None or (self._wake_timer is not None and self._wake_at <= at):
            return
        if self._wake_timer is not None:
            self._wake_timer.cancel()
        self._wake_at = at
        self._wake_timer = asyncio.get_running_loop().call_later(max(0.0, at - time.monotonic()), self._wake)

    def _wake(self) -> None:
        self._wake_timer = None
        for reply in self.conversation.wake(time.monotonic()):
            self._spawn(self._reply(reply))
        self._rearm()

    def answer(self, rid: str, result: dict[str, Any]) -> bool:
        """The local runtime just answered `rid` (`result`: its `result_body`): publish it now, from the
        request's on_result hook inside the Runtime API's callback, before the outcome's bookkeeping
        and a loop step sooner than `_handle` would. False when that cannot be done here (not a live
        invocation, no connection): `_handle` publishes it."""
        entry = self._entries.get(rid)
        client = self.connection.client
        if entry is None or entry.result is not None or client is None or not client.is_open:
            return False
        published_ms = time.time() * 1000
        try:
            self._publish(client, entry.sandbox_id, rid, lp.RESULT, result)
        except LivelambdaError as exc:
            log.warning("could not send the result for %s at once (%s); sending it again", rid, exc)
            return False
        entry.result = result
        entry.stop_keepalive()
        if self._on_published is not None:
            self._on_published(rid, published_ms)
        return True

    # ------------------------------------------------------------------ sending
    async def _reply(self, reply: Reply) -> None:
        """Publish `reply`, once there is a connection (waited for up to 30 s)."""
        try:
            client = await self.connection.ensure_connected(time.monotonic() + 30)
            sent = self._publish(client, reply.sandbox_id, reply.request_id, reply.kind, reply.body)
        except LivelambdaError as exc:
            log.warning("could not send %s for %s: %s", reply.kind, reply.request_id, exc)  # see _publish
            return
        await asyncio.wait([sent])  # a failure is logged by _publish

    def _publish(
        self, client: AppSyncEventsClient, sandbox: str, rid: str, kind: str, body: Any
    ) -> asyncio.Future[PublishResult]:
        """Encode one message and write it now (LivelambdaError if it cannot be); the future ends with
        AppSync's answer. A failure is logged and left there: the stub re-asks after its own
        reconnect, and gets the stored result then."""
        message = Message(kind, self.session, rid, sandbox, body)
        events = encode(message, self.secret, int(time.time() * 1000))
        channel = lp.response_channel(self.session, sandbox, self.endpoint.namespace)
        sent = client.publish_nowait(channel, events)
        sent.add_done_callback(lambda done: _log_failure(done, kind, rid))
        return sent

    # ------------------------------------------------------------------ for the dashboard
    def status(self) -> ConnectionStatus:
        state = self.connection.state
        stats = self.connection.stats
        retry_at = None
        if state.retry_in_s is not None:
            retry_at = time.time() + state.retry_in_s - (time.monotonic() - state.at)
        return ConnectionStatus(
            state=state.state,
            since=self.state_since,
            endpoint=self.endpoint.realtime_url,
            session=self.session,
            attempts=stats.attempts,
            failures=stats.failures,
            losses=stats.losses,
            next_retry_at=retry_at,
            backoff_s=state.retry_in_s,
            last_error=state.last_error,
            last_frame_at=self._last_frame_wall(),
            rejected=dict(self.reassembler.rejected),
            duplicates=self.reassembler.duplicates,
            duplicates_answered=self.duplicates_answered,
            recent_rejections=tuple(
                Rejection(at_ms / 1000, reason, detail)
                for at_ms, reason, detail in self.reassembler.recent_rejections
            ),
        )

    def _last_frame_wall(self) -> float | None:
        client = self.connection.client
        if client is None or client.last_frame_at is None:
            return self.last_frame_at
        return time.time() - (time.monotonic() - client.last_frame_at)


def _log_failure(sent: asyncio.Future[PublishResult], kind: str, rid: str) -> None:
    if sent.cancelled():
        return
    exc = sent.exception()
    try:
        if exc is not None:
            raise exc
        sent.result().raise_for_failed()
    except LivelambdaError as failed:
        log.warning("could not send %s for %s: %s", kind, rid, failed)
    except Exception:
        log.exception("sending %s for %s failed", kind, rid)


def livelambda_error(error_type: str, message: str) -> dict[str, Any]:
    """The result message for an invocation that ends with livelambda's own error."""
    return {
        "status": "livelambda_error",
        "error": {"errorType": error_type, "errorMessage": message, "stackTrace": []},
    }


def result_body(status: str, value: Any, logs: str = "") -> dict[str, Any]:
    """The result message for a runner outcome (`value`: its payload parsed, `InvocationOutcome.value`:
    the response, or Lambda's error dict; `logs`: the handler's output, whose end goes with it)."""
    if status == "ok":
        body: dict[str, Any] = {"status": "ok", "response": value}
    else:
        if not isinstance(value, dict):
            value = {"errorType": "Runtime.Unknown", "errorMessage": str(value), "stackTrace": []}
        body = {"status": status, "error": value}
        if logs:  # the stub's runtime reports the error itself
            logs = without_error_report(logs, value)
    if logs:
        body["logs"] = output_tail(logs)
    return body


def output_tail(text: str, limit: int = lp.RESULT_LOG_BYTES) -> str:
    """The last `limit` bytes of `text`, from a line's start, said to be cut when it is."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    tail = data[-limit:].decode("utf-8", "ignore")
    tail = tail.split("\n", 1)[1] if "\n" in tail[:-1] else tail
    cut = len(data) - len(tail.encode())
    return f"[livelambda: {cut} bytes of the handler's output cut here; `livelambda dev` shows all]\n{tail}"
