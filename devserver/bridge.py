"""The dev server's side of the live channel: one persistent AppSync connection, subscribed to the
session's request channel. Each invocation is authenticated and reassembled, acknowledged at once,
kept alive with heartbeats while it runs, and answered on the sandbox's response channel.

A request id runs at most once: a redelivered or re-asked invocation is acknowledged again and, once
finished, answered with the result it already had.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from devserver.executed import ExecutedLog
from devserver.rejections import RejectionSummary
from devserver.runtime.logs import without_error_report
from stub_runtime import live_protocol as lp
from stub_runtime.appsync.auth import ApiKeyAuth, IamAuth
from stub_runtime.appsync.client import AppSyncEventsClient, PublishResult
from stub_runtime.appsync.reconnecting import ConnectionState, ReconnectingClient
from stub_runtime.envelope import EnvelopeRejected, Message, Reassembler, encode
from stub_runtime.errors import LivelambdaError
from stub_runtime.reconnect import PolicyConfig, ReconnectPolicy

log = logging.getLogger("livelambda.bridge")

# How many finished request ids are remembered to answer redeliveries.
_REMEMBER = 2048
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


@dataclass
class _Entry:
    sandbox_id: str
    result: dict[str, Any] | None = None  # set once published (or being published)
    timer: asyncio.TimerHandle | None = None  # starts the keepalive after ack_delay_s
    keepalive: asyncio.Task[None] | None = None  # ack + heartbeats, once the run outlasts ack_delay_s

    def stop_keepalive(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.keepalive is not None:
            self.keepalive.cancel()


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
        self.executed = executed  # invocations run before, across restarts (None: this process only)
        self.rejections = RejectionSummary()
        self._summary_timer: asyncio.TimerHandle | None = None
        self.session = session
        self.secret = secret
        self._execute = execute
        self._heartbeat_s = heartbeat_interval_s
        self._ack_delay_s = ack_delay_s
        self._on_state = on_state
        self._on_published = on_published
        auth = endpoint.make_auth()
        self.connection = ReconnectingClient(
            lambda: AppSyncEventsClient(endpoint.http_url, endpoint.realtime_url, auth),
            ReconnectPolicy(policy or DEV_SERVER_POLICY),
        )
        self.reassembler = Reassembler(secret, session)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.state_since = time.time()
        self.last_frame_at: float | None = None
        self.duplicates_answered = 0

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Keep the connection until `close()`."""
        channel = lp.request_channel(self.session, self.endpoint.namespace)
        await self.connection.run([channel], self._on_event, on_state=self._state)

    async def close(self) -> None:
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
        if message.kind != lp.INVOKE:  # signed, but nothing a stub sends here: dropped and counted
            detail = f"a {message.kind!r} message on {channel}, where only {lp.INVOKE!r} belongs"
            self.reassembler.count_rejection(int(now * 1000), "unexpected_kind", detail)
            self._say_rejected("unexpected_kind", detail)
            return
        self._spawn(self._handle(message, now * 1000))

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

    def _refusal(self, rid: str, body: dict[str, Any], now_ms: int) -> str | None:
        """Why this invocation must not run, counted (its deadline has passed, or this app's dev server
        ran it before a restart); None when it may, and then it is recorded as run before it runs."""
        context = body.get("context") if isinstance(body.get("context"), dict) else {}
        deadline_ms = context.get("deadline_ms") if isinstance(context.get("deadline_ms"), int) else 0
        if deadline_ms and deadline_ms <= now_ms:
            detail = f"invocation {rid} arrived {now_ms - deadline_ms} ms after its deadline; not run"
            self.reassembler.count_rejection(now_ms, "expired", detail)
            self._say_rejected("expired", detail)
            return f"it reached the dev server {now_ms - deadline_ms} ms after its deadline; it was not run"
        if self.executed is None:
            return None
        if rid in self.executed:
            detail = f"invocation {rid} was run by this app's dev server before it restarted; not run again"
            self.reassembler.count_rejection(now_ms, "replay", detail)
            self._say_rejected("replay", detail)
            return (
                "the dev server had received this invocation before it restarted, so the handler may "
                "have run there; it is not run twice"
            )
        self.executed.record(rid, (deadline_ms or now_ms) + self.reassembler.max_skew_ms, now_ms)
        return None

    async def _handle(self, message: Message, received_ms: float) -> None:
        rid, sandbox = message.invocation_id, message.sandbox_id
        entry = self._entries.get(rid)
        if entry is not None:
            # Delivered twice, or the stub re-asked after a reconnect: never run it again.
            self.duplicates_answered += 1
            entry.sandbox_id = sandbox
            await self._reply(sandbox, rid, lp.ACK, {"duplicate": True})
            if entry.result is not None:
                await self._reply(sandbox, rid, lp.RESULT, entry.result)
            return
        refused = self._refusal(rid, message.body if isinstance(message.body, dict) else {}, int(received_ms))
        if refused is not None:
            await self._reply(sandbox, rid, lp.REJECT, {"message": refused})
            return
        entry = _Entry(sandbox)
        self._entries[rid] = entry
        while len(self._entries) > _REMEMBER:
            self._entries.popitem(last=False)
        body = message.body if isinstance(message.body, dict) else {}
        invocation = LiveInvocation(
            request_id=rid,
            sandbox_id=sandbox,
            event=body.get("event"),
            context=body.get("context") or {},
            hello=body.get("hello"),
            function=body.get("function") if isinstance(body.get("function"), str) else None,
            sent_ms=message.ts_ms,
            received_ms=received_ms,
        )
        # A result within ack_delay_s answers by itself: an ack first would cost it ~1 ms of the round
        # trip. A timer, not a task per invocation: most invocations never need one.
        loop = asyncio.get_running_loop()
        entry.timer = loop.call_later(self._ack_delay_s, self._start_keepalive, entry, rid)
        try:
            result = await self._execute(invocation)
        except Exception as exc:  # the runner failed: the stub still gets an answer, typed as ours
            log.exception("running %s failed", rid)
            result = livelambda_error(
                getattr(exc, "error_type", "Livelambda.DevServerError"),
                f"the dev server could not run the invocation: {exc}",
            )
        finally:
            entry.stop_keepalive()
        if entry.result is not None:
            return  # published by answer() as the runtime answered
        entry.result = result
        published_ms = time.time() * 1000  # handed to AppSync (the ack comes later)
        await self._reply(entry.sandbox_id, rid, lp.RESULT, result)
        if self._on_published is not None:
            self._on_published(rid, published_ms)

    def answer(self, rid: str, status: str, payload: bytes, logs: str = "") -> bool:
        """The local runtime just answered `rid`: publish the result now, from inside the Runtime API's
        callback, before the outcome's bookkeeping and a loop step sooner than `_handle` would. False
        when that cannot be done here (not a live invocation, no connection): `_handle` publishes it."""
        entry = self._entries.get(rid)
        client = self.connection.client
        if entry is None or entry.result is not None or client is None or not client.is_open:
            return False
        result = result_body(status, payload, logs)
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

    def _start_keepalive(self, entry: _Entry, rid: str) -> None:
        entry.keepalive = asyncio.ensure_future(self._keepalive(entry, rid))

    async def _keepalive(self, entry: _Entry, rid: str) -> None:
        """Acknowledge, then send heartbeats while the handler runs."""
        with contextlib.suppress(asyncio.CancelledError):
            await self._reply(entry.sandbox_id, rid, lp.ACK, {})
            while True:
                await asyncio.sleep(self._heartbeat_s)
                await self._reply(entry.sandbox_id, rid, lp.HEARTBEAT, {})

    # ------------------------------------------------------------------ sending
    async def _reply(self, sandbox: str, rid: str, kind: str, body: Any) -> None:
        try:
            client = await self.connection.ensure_connected(time.monotonic() + 30)
            sent = self._publish(client, sandbox, rid, kind, body)
        except LivelambdaError as exc:
            log.warning("could not send %s for %s: %s", kind, rid, exc)  # see _publish
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
    def status(self) -> dict[str, Any]:
        state = self.connection.state
        stats = self.connection.stats
        retry_at = None
        if state.retry_in_s is not None:
            retry_at = time.time() + state.retry_in_s - (time.monotonic() - state.at)
        return {
            "state": state.state,
            "since": self.state_since,
            "endpoint": self.endpoint.realtime_url,
            "session": self.session,
            "attempts": stats.attempts,
            "failures": stats.failures,
            "losses": stats.losses,
            "next_retry_at": retry_at,
            "backoff_s": state.retry_in_s,
            "last_error": state.last_error,
            "last_frame_at": self._last_frame_wall(),
            "rejected": dict(self.reassembler.rejected),
            "duplicates": self.reassembler.duplicates,
            "duplicates_answered": self.duplicates_answered,
            "recent_rejections": [
                {"at": at / 1000, "reason": reason, "detail": detail}
                for at, reason, detail in self.reassembler.recent_rejections
            ],
        }

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


def result_body(status: str, payload: bytes, logs: str = "") -> dict[str, Any]:
    """The result message for a runner outcome (payload: the response JSON, or Lambda's error JSON;
    `logs`: the handler's output, whose end goes with it)."""
    try:
        value = json.loads(payload) if payload else None
    except ValueError:
        value = payload.decode("utf-8", "replace")
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
