"""One Lambda sandbox in live mode: at most one AppSync connection, opened only when an invocation
needs it, kept across warm invocations, distrusted after a long freeze, and every invocation ended
once — with the dev server's outcome or a typed livelambda error — before the Lambda deadline."""

from __future__ import annotations

import logging
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
from stub_runtime.conversation import Failed, Invocation, StubConversation
from stub_runtime.envelope import EnvelopeRejected, Message, Reassembler, encode, new_id
from stub_runtime.errors import HandlerFault, LivelambdaError
from stub_runtime.outcomes import AppSyncRejected, EndpointUnreachable
from stub_runtime.reconnect import PolicyConfig, ReconnectPolicy
from stub_runtime.settings import StubSettings

log = logging.getLogger("livelambda.stub")


class HandlerError(HandlerFault):
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
        self.conversation = StubConversation(
            settings.session,
            self.id,
            ack_timeout_s=settings.ack_timeout_s,
            silence_timeout_s=settings.silence_timeout_s,
        )
        self.hello_sent = False
        self.invocations = 0
        self._subscribed: BlockingConnection | None = None

    # ------------------------------------------------------------------ the Lambda-facing entry
    def invoke(self, event: Any, context: Any) -> Any:
        """Forward one invocation; return the handler's result or raise its error / ours. The
        conversation (stub_runtime/conversation.py) decides; this moves its messages and waits."""
        self.invocations += 1
        s = self.settings
        remaining_s = context.get_remaining_time_in_millis() / 1000
        start = self.clock()
        deadline_ms = int(self.wall() * 1000 + remaining_s * 1000)
        ctx = lp.context_to_dict(context, deadline_ms, int(remaining_s * 1000))
        body: dict[str, Any] = {"event": event, "context": ctx}
        if s.function:
            body["function"] = s.function
        if not self.hello_sent:
            body["hello"] = hello(context, self.invocations)
        invocation = Invocation(
            context.aws_request_id, body, start + remaining_s - s.deadline_margin_s, remaining_s
        )
        conv = self.conversation
        request: Message | None = conv.start(invocation, start)
        try:
            while (outcome := conv.outcome) is None:
                if request is not None:
                    self._send(request, invocation.deadline)
                    self.hello_sent = True
                try:
                    item = self._next_message(conv.next_deadline())
                except (ConnectionLost, ClientClosed):
                    # The socket died under us: the invocation goes out again on a new connection.
                    self.connection.lost()
                    conv.connection_lost(self.clock())
                else:
                    if item is None:
                        conv.wake(self.clock())
                    else:
                        conv.receive(item, self.clock())
                request = conv.request_to_send()
        except LivelambdaError as exc:
            raise conv.failed(exc) from None
        finally:
            self.connection.end_demand()
        if isinstance(outcome, Failed):
            raise outcome.error
        return _result(outcome.body)

    def _next_message(self, until: float) -> Message | None:
        """The next message on this sandbox's channel, or None at `until`. Raises ConnectionLost."""
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
            if message is not None:
                return message

    # ------------------------------------------------------------------ connection
    def _send(self, message: Message, deadline: float) -> None:
        """Publish the invocation. A kept socket can turn out dead only when written to (it broke while
        the sandbox was frozen): then one fresh connection, as the policy allows."""
        conv = self.conversation
        events = encode(message, self.settings.secret, int(self.wall() * 1000))
        channel = lp.request_channel(self.settings.session, self.settings.namespace)
        before = self._subscribed
        for attempt in (1, 2):
            conn = self._channel(deadline)
            conv.publishing()  # from here the dev server may receive it, whatever happens next
            try:
                result = conn.publish(channel, events, max(self.clock() + 0.01, deadline))
            except (ConnectionLost, ClientClosed):
                self.connection.lost()
                if attempt == 2:
                    raise
                continue
            result.raise_for_failed()
            conv.published(self.clock(), events=len(events), new_connection=conn is not before)
            return

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


def _result(body: dict[str, Any]) -> Any:
    """The dev server's result as Lambda gives it: the response returned, the handler's error raised."""
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
