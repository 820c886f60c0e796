"""One Lambda sandbox in live mode: at most one AppSync connection, opened only when an invocation
needs it, kept across warm invocations, distrusted after a long freeze, and every invocation ended
once — with the dev server's outcome or a typed livelambda error — before the Lambda deadline."""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from stub_runtime import live_protocol as lp
from stub_runtime.appsync.auth import ApiKeyAuth, IamAuth
from stub_runtime.appsync.blocking import BlockingConnection, OnDemandConnection
from stub_runtime.appsync.errors import AppSyncConnectionError, ClientClosed, ConnectGiveUp, ConnectionLost
from stub_runtime.appsync.frames import AppSyncServiceError
from stub_runtime.appsync.publishing import HttpPublisher
from stub_runtime.envelope import EnvelopeRejected, Message, Reassembler, encode, new_id
from stub_runtime.errors import LivelambdaError, RemoteProtocolError
from stub_runtime.outcomes import (
    AppSyncRejected,
    DeadlineExceeded,
    DevServerLost,
    DevServerNotRunning,
    EndpointUnreachable,
    Rejected,
    after_sending,
)
from stub_runtime.reconnect import PolicyConfig, ReconnectPolicy
from stub_runtime.settings import StubSettings

log = logging.getLogger("livelambda.stub")


class HandlerError(Exception):
    """The handler failed on the developer's machine; carries Lambda's three error fields as-is."""

    def __init__(self, error_type: str, message: str, stack_trace: list[str]) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace


class Sandbox:
    """Blocking from end to end: Lambda calls the handler once at a time and waits for it, so the stub
    writes and reads its one socket directly, with no event loop or thread to wake on the way."""

    def __init__(
        self,
        settings: StubSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.settings = settings
        self.id = new_id()[:16]
        self.clock = clock
        self.wall = wall
        host = urlsplit(settings.http_url).netloc
        if settings.auth == "iam":
            auth: Any = IamAuth(host, settings.region)
        else:
            auth = ApiKeyAuth(settings.api_key or "", host)
        # One kept-alive HTTP connection for the sandbox's life (IAM publishes over HTTP), whatever
        # becomes of its WebSocket: a new one would cost a TCP and a TLS handshake a publish.
        self.http_publisher = HttpPublisher(settings.http_url, clock=clock)

        def factory() -> BlockingConnection:
            return BlockingConnection(
                settings.http_url,
                settings.realtime_url,
                auth,
                open_timeout_s=settings.connect_timeout_s,
                ack_timeout_s=settings.connect_timeout_s,
                clock=clock,
                http_publisher=self.http_publisher,
            )

        self.connection = OnDemandConnection(
            factory, ReconnectPolicy(PolicyConfig(mode="on_demand")), clock=clock, sleep=sleep
        )
        self.reassembler = Reassembler(settings.secret, settings.session)
        self.hello_sent = False
        self._handed_over = False  # this invocation may have reached the dev server
        self.invocations = 0
        self._subscribed: BlockingConnection | None = None

    # ------------------------------------------------------------------ the Lambda-facing entry
    def invoke(self, event: Any, context: Any) -> Any:
        """Forward one invocation; return the handler's result or raise its error / ours."""
        self.invocations += 1
        s = self.settings
        remaining_s = context.get_remaining_time_in_millis() / 1000
        start = self.clock()
        deadline = start + remaining_s - s.deadline_margin_s
        deadline_ms = int(self.wall() * 1000 + remaining_s * 1000)
        request_id = context.aws_request_id
        ctx = lp.context_to_dict(context, deadline_ms, int(remaining_s * 1000))
        body: dict[str, Any] = {"event": event, "context": ctx}
        if s.function:
            body["function"] = s.function
        if not self.hello_sent:
            body["hello"] = hello(context, self.invocations)
        self._handed_over = False
        try:
            return self._converse(request_id, body, deadline, start, remaining_s)
        except LivelambdaError as exc:
            if self._handed_over:
                raise after_sending(exc) from None
            raise
        finally:
            self.connection.end_demand()

    def _converse(
        self, request_id: str, body: dict[str, Any], deadline: float, start: float, remaining_s: float
    ) -> Any:
        """Send the invocation and wait for its outcome (acks and heartbeats keep it alive)."""
        s = self.settings
        events = self._send(request_id, body, deadline)
        self.hello_sent = True
        acked = False
        ack_by = self.clock() + s.ack_timeout_s
        # Until acknowledged, ask again now and then: a dev server that was reconnecting when
        # the first copy went out gets the next one (it runs each request id at most once).
        # Only a one-event invocation: a large one may still be in transit, and sending its
        # megabytes again would only add to the queue.
        resend_every = s.ack_timeout_s / 4 if events == 1 else math.inf
        resend_at = self.clock() + resend_every
        last_heard = self.clock()
        while True:
            now = self.clock()
            if not acked and now >= resend_at and now < ack_by:
                ack_by = self._ask_again(request_id, body, deadline, ack_by)
                resend_at = self.clock() + resend_every
                continue
            waiting_for = min(ack_by, resend_at) if not acked else last_heard + s.silence_timeout_s
            try:
                item = self._next_message(request_id, min(deadline, waiting_for))
            except (ConnectionLost, ClientClosed):
                # The socket died under us: a new connection, and the invocation asked again
                # (a fresh message id; the dev server runs each request id at most once).
                self.connection.lost()
                ack_by = self._ask_again(request_id, body, deadline, ack_by)
                continue
            if item is None:
                if not acked and self.clock() < min(ack_by, deadline):
                    continue  # time to ask again
                if not acked:
                    raise DevServerNotRunning(s.session, self.clock() - start)
                if self.clock() >= deadline:
                    raise DeadlineExceeded(request_id, remaining_s)
                raise DevServerLost(request_id, s.silence_timeout_s)
            last_heard = self.clock()
            if item.kind in (lp.ACK, lp.HEARTBEAT):
                acked = True
            elif item.kind == lp.RESULT:
                return _outcome(item.body)
            elif item.kind == lp.REJECT:
                raise Rejected(str(item.body.get("message", "the dev server refused the invocation")))

    def _ask_again(self, request_id: str, body: dict[str, Any], deadline: float, ack_by: float) -> float:
        """Send the invocation again; the time by which an ack must come. A copy that went out on a new
        connection gets a whole ack timeout: an ack sent to the old one is lost with it, and an
        AppSync blip is no sign that the dev server is not running (the chaos suite saw a dev server
        reported "not running" while both were reconnecting)."""
        before = self._subscribed
        self._send(request_id, body, deadline)
        if self._subscribed is not before:
            ack_by = max(ack_by, self.clock() + self.settings.ack_timeout_s)
        return ack_by

    def _next_message(self, request_id: str, until: float) -> Message | None:
        """The next message for this invocation, or None at `until`. Raises ConnectionLost."""
        conn = self._subscribed
        if conn is None or conn is not self.connection.connection:
            raise ConnectionLost("no subscribed connection")
        while True:
            data = conn.next_data(until)
            if data is None:
                return None
            try:
                message = self.reassembler.feed(data.event, int(self.wall() * 1000))
            except EnvelopeRejected as exc:
                log.warning("livelambda: dropped a message: %s", exc)
                continue
            if message is not None and message.sandbox_id == self.id and message.invocation_id == request_id:
                return message

    # ------------------------------------------------------------------ connection
    def _send(self, request_id: str, body: dict[str, Any], deadline: float) -> int:
        """Publish the invocation; how many events it took. A kept socket can turn out dead only when
        written to (it broke while the sandbox was frozen): then one fresh connection, as the policy
        allows."""
        message = Message(lp.INVOKE, self.settings.session, request_id, self.id, body)
        events = encode(message, self.settings.secret, int(self.wall() * 1000))
        channel = lp.request_channel(self.settings.session, self.settings.namespace)
        for attempt in (1, 2):
            conn = self._channel(deadline)
            self._handed_over = True  # from here the dev server may receive it, whatever happens next
            try:
                result = conn.publish(channel, events, max(self.clock() + 0.01, deadline))
            except (ConnectionLost, ClientClosed):
                self.connection.lost()
                if attempt == 2:
                    raise
                continue
            result.raise_for_failed()
            return len(events)
        raise AssertionError("unreachable")

    def _channel(self, deadline: float) -> BlockingConnection:
        """An open connection subscribed to this sandbox's response channel."""
        s = self.settings
        try:
            conn = self.connection.ensure_connected(deadline)
            if conn is not self._subscribed:
                conn.subscribe(lp.response_channel(s.session, self.id, s.namespace), deadline)
                self._subscribed = conn
        except ConnectGiveUp as exc:
            # What this invocation spent (dials, seconds) and why it stopped, not just the last dial.
            raise EndpointUnreachable(
                s.realtime_url, exc.detail, in_vpc=s.in_vpc, vpc_detail=s.vpc_detail
            ) from None
        except AppSyncServiceError as exc:
            raise AppSyncRejected(s.realtime_url, str(exc)) from None
        except (AppSyncConnectionError, OSError) as exc:
            raise EndpointUnreachable(
                s.realtime_url, f"{type(exc).__name__}: {exc}", in_vpc=s.in_vpc, vpc_detail=s.vpc_detail
            ) from None
        return conn


def _outcome(body: Any) -> Any:
    if not isinstance(body, dict) or "status" not in body:
        raise RemoteProtocolError(f"the dev server sent a result without a status: {body!r:.200}")
    logs = body.get("logs")
    if isinstance(logs, str) and logs:  # the handler's output: into this function's log, as its own
        sys.stdout.write(logs if logs.endswith("\n") else logs + "\n")
        sys.stdout.flush()
    if body["status"] == lp.OK:
        return body.get("response")
    error = body.get("error") or {}
    raise HandlerError(
        str(error.get("errorType") or "Runtime.Unknown"),
        str(error.get("errorMessage") or ""),
        [str(line) for line in error.get("stackTrace") or []],
    )


def hello(context: Any, invocation_count: int) -> dict[str, Any]:
    """What the dev server should know of the real function: its configuration, never credentials."""
    env = os.environ
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": str(context.memory_limit_in_mb),
        "log_group_name": context.log_group_name,
        "region": env.get("AWS_REGION", ""),
        "runtime": env.get("AWS_EXECUTION_ENV", ""),
        "handler": env.get("LIVELAMBDA_ORIGINAL_HANDLER", ""),
        "architecture": platform.machine(),
        "python": platform.python_version(),
        "environment": lp.public_environment(dict(env)),
        "sandbox_invocations": invocation_count,
    }
