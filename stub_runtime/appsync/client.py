"""Async AppSync Events client: one WebSocket connection, plus HTTP publish over a small pool of
kept-alive HTTP/1.1 connections (httpx, imported only when used: the stub's layer has no httpx).

    client = AppSyncEventsClient(http_url, realtime_url, ApiKeyAuth(key, host))
    await client.connect()
    sub = await client.subscribe("/livelambda/s1/*")
    await client.publish("/livelambda/s1/req", ['{"a":1}'])
    event = await sub.get()            # or: async for event in sub: ...
    await client.close()

The protocol is `session.AppSyncSession`'s, as in the stub's blocking client: this shell moves its
texts over `ws_protocol.WebSocketProtocol` (each message handed over inside `data_received`), keeps
one timer for the session's next deadline, and wakes the futures and subscriptions its events name.
The connection is dead when no frame arrived within `connectionTimeoutMs` (from connection_ack), or
`silence_timeout_s` when shorter: every pending operation and subscription then fails with
`ConnectionLost`. `wait_closed()` returns why it ended. This class never reconnects:
`reconnecting.ReconnectingClient` does, under a `ReconnectPolicy`.

With an auth that publishes over HTTP (IAM), `connect()` also opens HTTP_WARM pooled connections while
the WebSocket dials: on a real link a new TCP + TLS connection costs two round trips, which the first
results would otherwise pay. The pool is closed with the client (after its publishes in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from stub_runtime.appsync import frames as f
from stub_runtime.appsync.auth import Auth
from stub_runtime.appsync.errors import (
    AppSyncConnectionError,
    ClientClosed,
    ConnectFailed,
    ConnectionLost,
    HttpPublishFailed,
    InvalidEvents,
    OperationTimeout,
    no_answer,
)
from stub_runtime.appsync.frames import AppSyncServiceError
from stub_runtime.appsync.publishing import (
    PublishResult,
    check_channel,
    default_tls_context,
    http_publish_answer,
    http_publish_request,
    merge,
    normalise_http_url,
    plan_publish,
    sorted_result,
)
from stub_runtime.appsync.session import (
    CLOSING,
    CONNECTING,
    OPEN,
    Acked,
    Answered,
    AppSyncSession,
    Closed,
    Failed,
    State,
)
from stub_runtime.appsync.ws_protocol import WebSocketProtocol, open_websocket
from stub_runtime.channels import InvalidChannel
from stub_runtime.errors import LocalProtocolError, RemoteProtocolError

log = logging.getLogger("livelambda.appsync")
T = TypeVar("T")

HTTP_POOL = 8  # kept-alive HTTP connections at most: results, acks and heartbeats in flight at once
HTTP_WARM = 2  # opened on connect: a result and an ack, or a large result's two publishes, at once
HTTP_KEEPALIVE_S = 300.0  # an idle one is kept this long (a closed one is noticed before reuse)


_END = object()


class Subscription:
    """Events of one subscription, decoded. `await sub.get()` or `async for event in sub`.

    When the subscription ends, `get()` raises (ConnectionLost if the connection died, ClientClosed
    after unsubscribe/close) and iteration stops (re-raising ConnectionLost, ending quietly otherwise).
    """

    def __init__(self, client: AppSyncEventsClient, channel: str, sub_id: str) -> None:
        self.client = client
        self.channel = channel
        self.id = sub_id
        self.active = False
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._end_exc: BaseException | None = None
        self._ended = False
        self._listener: Callable[[f.Data], None] | None = None

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} id={self.id[:8]} active={self.active}>"

    async def get_data(self) -> f.Data:
        """The next `Data` frame (decoded `event` and the `raw` JSON string)."""
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later call ends too
            raise self._end_exc or ClientClosed(f"subscription to {self.channel} ended")
        return item

    async def get(self) -> Any:
        return (await self.get_data()).event

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.get()
        except ClientClosed:
            raise StopAsyncIteration from None

    def listen(self, listener: Callable[[f.Data], None]) -> None:
        """Hand every `Data` frame to `listener` as the connection reads it, instead of queueing it
        for `get()` (one task switch less an event, for a reader that only dispatches). Frames
        already queued go first."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _END:
                self._queue.put_nowait(_END)
                break
            listener(item)
        self._listener = listener

    def _deliver(self, data: f.Data) -> None:
        if self._listener is not None:
            self._listener(data)
        else:
            self._queue.put_nowait(data)

    def _end(self, exc: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self.active = False
            self._end_exc = exc
            self._queue.put_nowait(_END)


# ------------------------------------------------------------------------------------------ the client
def _closed_while_connecting() -> ClientClosed:
    return ClientClosed("the AppSync client was closed while it was connecting")


async def _gather(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Run all; once all are done, raise the first failure (none is left unretrieved)."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for item in results:
        if isinstance(item, BaseException):
            raise item
    return results  # type: ignore[return-value]


class AppSyncEventsClient:
    """One AppSync Events connection. Not reusable: after `close()` or a loss, make a new one.

    - `http_url`: `https://{HTTP host}/event` (a bare `https://{host}` gets `/event` appended);
      `realtime_url`: `wss://{REALTIME host}/event/realtime`; `auth`: ApiKeyAuth / IamAuth / TokenAuth.
    - `open_timeout_s` bounds TCP + TLS + upgrade, `ack_timeout_s` the connection_ack and each
      subscribe/unsubscribe/publish answer, `http_timeout_s` each HTTP publish request.
    - liveness is AppSync's `ka` frames (no WebSocket pings, as AppSync clients do).
    - `silence_timeout_s`: declare the connection dead after this much silence when shorter than
      connectionTimeoutMs (300 s on AppSync).
    - `max_event_bytes`: events above it are not sent and come back as local failures (None: send
      anyway and let the service judge). `clock`: the session's times (monotonic, as the loop's).
    """

    def __init__(
        self,
        http_url: str,
        realtime_url: str,
        auth: Auth,
        *,
        open_timeout_s: float = 10.0,
        ack_timeout_s: float = 10.0,
        http_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        silence_timeout_s: float | None = None,
        max_event_bytes: int | None = f.MAX_EVENT_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http_url = normalise_http_url(http_url)
        self.realtime_url = realtime_url
        self.auth = auth
        self.open_timeout_s = open_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.http_timeout_s = http_timeout_s
        self.ssl_context = ssl_context
        self.max_event_bytes = max_event_bytes
        self.clock = clock
        self.session = AppSyncSession(
            realtime_url,
            auth,
            ack_timeout_s=ack_timeout_s,
            silence_timeout_s=silence_timeout_s,
            max_event_bytes=max_event_bytes,
        )
        self._dialled = False
        self._ws: WebSocketProtocol | None = None
        self._acked: asyncio.Future[None] | None = None
        self._waiters: dict[str, asyncio.Future[Any]] = {}  # by request id
        self._subs: dict[str, Subscription] = {}
        self._done: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._http: Any = None  # httpx.AsyncClient, made on first use
        self._http_busy = 0  # HTTP publishes in flight
        self._http_closed = False
        self._http_tasks: set[asyncio.Future[Any]] = set()  # the warm-up, a deferred close

    def __repr__(self) -> str:
        return f"<AppSyncEventsClient {self.realtime_url} {self.state.name}>"

    # ---------------------------------------------------------------------------- state: the session's
    # (its stats, timeouts and last error are read on `session`)
    @property
    def state(self) -> State:
        return self.session.state

    @property
    def is_open(self) -> bool:
        return self.session.state is OPEN

    @property
    def closed(self) -> bool:
        return self.session.state >= CLOSING

    @property
    def close_reason(self) -> BaseException | None:
        """Why the connection ended: a ConnectionLost (or the connect's failure), None after `close()`."""
        return self.session.close_reason

    @property
    def last_frame_at(self) -> float | None:
        return self.session.last_frame_at

    def is_stale(self, now: float | None = None) -> bool:
        """True when the socket must not be trusted: not open, or no frame within `session.timeout_s`."""
        return self.session.is_stale(self.clock() if now is None else now)

    async def wait_closed(self) -> BaseException | None:
        """Wait until the connection ends; returns the ConnectionLost, or None after `close()`."""
        if self._done is None:
            raise ClientClosed("wait_closed() before connect()")
        await self._done.wait()
        return self.session.close_reason

    # ---------------------------------------------------------------------------- connect
    async def connect(self, *, timeout_s: float | None = None) -> None:
        """Open the WebSocket, send connection_init, wait for connection_ack.

        `timeout_s` bounds the whole thing (default open_timeout_s + ack_timeout_s). Raises
        ConnectFailed, or AppSyncServiceError for a `connection_error` (e.g. UnauthorizedException).
        """
        if self._dialled or self.session.state is not CONNECTING:
            raise ClientClosed(f"connect() on a client that is {self.state.name.lower()}: make a new client")
        self._dialled = True
        self._done = asyncio.Event()
        if self.auth.publish_over_http:
            self._spawn_http(self.warm_http())
        budget = self.open_timeout_s + self.ack_timeout_s if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(self._connect(), max(budget, 0.0))
        except BaseException as exc:
            error = no_answer(self.realtime_url, budget) if isinstance(exc, TimeoutError) else exc
            self.abort(error if isinstance(error, Exception) else None)
            if error is not exc:
                raise error from None
            raise

    async def _connect(self) -> None:
        ws = await open_websocket(
            self.realtime_url,
            f.subprotocols(self.auth.headers(f.connect_body())),
            self._on_text,
            self._on_lost,
            timeout_s=self.open_timeout_s,
            max_size=4 * 1024 * 1024,
            ssl_context=self.ssl_context,
        )
        self._ws = ws
        if ws.subprotocol != f.SUBPROTOCOL:
            raise RemoteProtocolError(
                f"server at {self.realtime_url} selected subprotocol {ws.subprotocol!r}, "
                f"not {f.SUBPROTOCOL!r}: is this an AppSync Events endpoint?"
            )
        if self.session.state is not CONNECTING:  # closed (or lost) while the WebSocket opened
            raise self.session.close_reason or _closed_while_connecting()
        self._acked = asyncio.get_running_loop().create_future()
        self.session.connect(self.clock())
        self._pump()
        await self._acked

    # ---------------------------------------------------------------------------- the session's texts, events
    def _on_text(self, text: str | None) -> None:
        """A message, as the connection reads it (None: a binary one)."""
        self.session.receive_text(text, self.clock())
        self._handle_events()  # (a frame never brings the next deadline nearer: the timer stands)

    def _on_lost(self, code: int) -> None:
        self.session.connection_lost(code, self.clock())
        self._handle_events()

    def _pump(self) -> None:
        """Write what the session queued, handle its events, and time its next deadline."""
        texts = self.session.data_to_send()
        ws = self._ws
        if texts and ws is not None:
            try:
                for text in texts:
                    ws.send_text(text)
            except ConnectionLost as exc:
                lost = ConnectionLost(f"the connection broke while sending: {exc}")
                self.session.connection_lost(ws.close_code, self.clock(), lost)
        self._handle_events()
        due = self.session.next_deadline()
        if due is not None and due < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = due
            self._timer = asyncio.get_running_loop().call_later(max(0.0, due - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self.session.advance(self.clock())
        self._pump()

    def _handle_events(self) -> None:
        for event in self.session.events_received():
            if isinstance(event, f.Data):
                sub = self._subs.get(event.id)
                if sub is not None:
                    sub._deliver(event)
            elif isinstance(event, Answered):
                result = event.result
                if isinstance(result, f.SubscribeSuccess):
                    sub = self._subs.get(result.id)
                    if sub is not None:
                        sub.active = True
                elif isinstance(result, f.UnsubscribeSuccess):
                    sub = self._subs.pop(result.id, None)
                    if sub is not None:
                        sub._end(None)
                fut = self._waiters.pop(event.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(result)
            elif isinstance(event, Failed):
                sub = self._subs.get(event.id)  # (a subscribe's request id is the subscription's)
                if sub is not None and not sub.active:  # a refused subscription
                    del self._subs[event.id]
                fut = self._waiters.pop(event.id, None)
                if fut is not None and not fut.done():
                    fut.set_exception(event.error)
            elif isinstance(event, Acked):
                if self._acked is not None and not self._acked.done():
                    self._acked.set_result(None)
            elif isinstance(event, Closed):
                self._finish(event.reason)

    def _finish(self, reason: BaseException | None) -> None:
        """The session ended the connection: wake everyone; a transport it gave up on is dropped."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        acked = self._acked
        if acked is not None and not acked.done():
            acked.set_exception(reason or _closed_while_connecting())
        for sub in self._subs.values():
            sub._end(reason)
        self._subs.clear()
        if self._done is not None:
            self._done.set()
        if reason is not None and self._ws is not None:
            self._ws.abort()

    def abort(self, reason: BaseException | None = None) -> None:
        """Drop the connection at once, without a closing handshake (for a dead or stale socket).
        Waiters fail with `reason` (default: ConnectionLost)."""
        ws = self._ws
        lost = reason or ConnectionLost("the connection was aborted; reconnect")
        self.session.connection_lost(ws.close_code if ws is not None else 1006, self.clock(), lost)
        self._handle_events()
        if ws is not None:
            ws.abort()

    async def close(self) -> None:
        """Close the connection; pending operations fail with ClientClosed, subscriptions end."""
        self.session.close()
        self._handle_events()
        ws = self._ws
        if ws is not None:
            await ws.close(timeout_s=2.0)
        self.session.connection_lost(ws.close_code if ws is not None else 1000, self.clock())
        await self._close_http()

    # ---------------------------------------------------------------------------- request/reply
    def _start(self, request_id: str) -> asyncio.Future[Any]:
        """Send what the session queued for request `request_id`; the future gets its end (the
        session ends every request, at the latest at its deadline). A write that failed raises here."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = fut
        self._pump()
        if fut.done() and not fut.cancelled() and fut.exception() is not None:
            raise fut.exception()  # type: ignore[misc]
        return fut

    async def subscribe(self, channel: str) -> Subscription:
        """Subscribe and wait for subscribe_success; a subscribe_error raises AppSyncServiceError."""
        sub_id = self.session.subscribe(channel, self.clock())
        sub = self._subs[sub_id] = Subscription(self, channel, sub_id)
        try:
            await self._start(sub_id)
        except BaseException:
            self._subs.pop(sub_id, None)
            raise
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """Unsubscribe and wait for unsubscribe_success (an early unsubscribe may be ignored by AppSync).
        A subscription of a connection that is already gone needs nothing: this returns at once."""
        if sub.client is not self:
            raise LocalProtocolError("unsubscribe() with a subscription of another client")
        if not sub.active or self.session.state is not OPEN:
            return
        await self._start(self.session.unsubscribe(sub.id, self.clock()))

    # ---------------------------------------------------------------------------- publish
    async def publish(self, channel: str, events: Sequence[str]) -> PublishResult:
        """Publish JSON-encoded events, 5 a request. Over the WebSocket, except with an auth whose
        `publish_over_http` is set (IAM), which goes over HTTP. Oversized events are not sent and come
        back in `failed` with `local=True`; a request-level error raises AppSyncServiceError."""
        if self.auth.publish_over_http:
            return await self.publish_http(channel, events)
        return await self.publish_ws(channel, events)

    async def publish_ws(self, channel: str, events: Sequence[str]) -> PublishResult:
        return await self._start(self.session.publish(channel, events, self.clock()))

    def publish_nowait(self, channel: str, events: Sequence[str]) -> asyncio.Future[PublishResult]:
        """`publish`, with every frame written before this returns; the future gets the result. For a
        caller inside a protocol callback (the dev server publishes a result from the Runtime API's)."""
        if self.auth.publish_over_http:
            return asyncio.ensure_future(self.publish_http(channel, events))
        return self._start(self.session.publish(channel, events, self.clock()))

    async def publish_http(self, channel: str, events: Sequence[str]) -> PublishResult:
        """POST /event with the auth headers, over the kept-alive pool; needs no WebSocket connection.
        Raises ClientClosed after `close()`."""
        batches, result = plan_publish(channel, events, self.max_event_bytes)
        http = self._http_client()
        replies = await _gather(self._post(http, channel, [events[i] for i in b]) for b in batches)
        for batch, (successful, failed) in zip(batches, replies, strict=True):
            merge(result, batch, successful, failed)
        return sorted_result(result)

    async def _post(self, http: Any, channel: str, payload: list[str]) -> f.PublishEntries:
        import httpx

        body, headers = http_publish_request(self.auth, channel, payload)
        self._http_busy += 1
        try:
            for attempt in (1, 2):
                try:
                    response = await http.post(self.http_url, content=body, headers=headers)
                    break
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                    # A kept connection the server closed as the request went: once more, on a new one.
                    if attempt == 2:
                        raise HttpPublishFailed(f"HTTP publish to {self.http_url} failed: {exc!r}") from exc
                except httpx.HTTPError as exc:  # refused, TLS, timeouts
                    raise HttpPublishFailed(f"HTTP publish to {self.http_url} failed: {exc!r}") from exc
        finally:
            self._http_busy -= 1
            if self._http_closed and not self._http_busy:
                self._spawn_http(self._close_http())
        return http_publish_answer(self.http_url, channel, response.status_code, response.content)

    def _http_client(self) -> Any:
        if self._http_closed:
            raise ClientClosed("the AppSync client was closed: make a new client")
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                verify=self.ssl_context or default_tls_context(),  # what the WebSocket trusts
                limits=httpx.Limits(
                    max_connections=HTTP_POOL,
                    max_keepalive_connections=HTTP_POOL,
                    keepalive_expiry=HTTP_KEEPALIVE_S,
                ),
                timeout=self.http_timeout_s,
            )
        return self._http

    async def warm_http(self, connections: int = HTTP_WARM) -> None:
        """Open `connections` pooled HTTP connections, best effort; `connect()` starts this for an auth
        that publishes over HTTP. Each with `OPTIONS /event`: no body, no auth, nothing published or
        billed (a CORS preflight); whatever the answer, the connection stays in the pool."""
        if self._http_closed:
            return
        http = self._http_client()

        async def one() -> None:
            with contextlib.suppress(Exception):
                await http.request("OPTIONS", self.http_url)

        await asyncio.gather(*(one() for _ in range(connections)))

    def _spawn_http(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._http_tasks.add(task)
        task.add_done_callback(self._http_tasks.discard)

    async def _close_http(self) -> None:
        """Close the pool with the client; publishes in flight end first (the last one closes it)."""
        self._http_closed = True
        current = asyncio.current_task()
        for task in list(self._http_tasks):
            if task is not current:
                task.cancel()  # the warm-up
        if self._http is None or self._http_busy:
            return
        http, self._http = self._http, None
        await http.aclose()


__all__ = [
    "AppSyncConnectionError",
    "AppSyncEventsClient",
    "AppSyncServiceError",
    "ClientClosed",
    "ConnectFailed",
    "ConnectionLost",
    "HttpPublishFailed",
    "InvalidChannel",
    "InvalidEvents",
    "OperationTimeout",
    "PublishResult",
    "Subscription",
    "check_channel",
]
